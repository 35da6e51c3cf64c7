package com.example.orders.security;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import jakarta.servlet.FilterChain;
import jakarta.servlet.ServletException;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.io.Serializable;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.security.Principal;
import java.util.Arrays;
import java.util.Collections;
import java.util.Enumeration;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.function.Predicate;
import org.apache.commons.logging.Log;
import org.apache.commons.logging.LogFactory;
import org.springframework.security.core.GrantedAuthority;
import org.springframework.security.core.authority.SimpleGrantedAuthority;
import org.springframework.security.core.context.SecurityContext;
import org.springframework.security.core.context.SecurityContextHolder;
import org.springframework.security.core.context.SecurityContextHolderStrategy;
import org.springframework.security.web.authentication.preauth.PreAuthenticatedAuthenticationToken;
import org.springframework.web.filter.OncePerRequestFilter;

/**
 * Turns the metagate gateway's trusted headers into a Spring Security
 * {@link PreAuthenticatedAuthenticationToken}: no JWT parsing in the API.
 *
 * <ul>
 *   <li>principal: a {@link GatewayCaller} (X-Client-Id, X-Client-Kind,
 *       X-Client-Name, X-User-Id)</li>
 *   <li>authorities: {@code SCOPE_xxx} for each entry of X-Client-Scopes, the
 *       same names Spring's own JWT resource server uses, so
 *       {@code hasAuthority("SCOPE_read:orders")} works unchanged</li>
 *   <li>details: a {@link GatewayCallerDetails} with the per-key
 *       X-Client-Metadata-* headers and the X-Client-Metadata JSON object</li>
 * </ul>
 *
 * <p><b>Trust.</b> These headers are proof of identity ONLY if every request
 * reaches this application through the gateway, which strips client-sent
 * X-Client-* headers and sets its own from a verified token. Deploy the API so
 * that nothing else can connect: bind it to 127.0.0.1 in the gateway's pod
 * ({@code server.address=127.0.0.1}, sidecar form), or admit only the gateway
 * pods with a NetworkPolicy (shared gateway form). Never publish the API port
 * itself. See README.md next to this file.
 *
 * <p>The optional {@code fromGateway} predicate is a second line of defence:
 * for the sidecar form pass {@link #LOOPBACK_PEER}, and headers on a
 * connection from anywhere else are ignored (the request stays anonymous).
 *
 * <p>Register it in the security chain only, NOT as a {@code @Component} (Spring
 * Boot would also add every Filter bean to the servlet container):
 *
 * <pre>{@code
 * @Bean
 * SecurityFilterChain api(HttpSecurity http, ObjectMapper mapper) throws Exception {
 *     return http
 *         .csrf(csrf -> csrf.disable())
 *         .sessionManagement(s -> s.sessionCreationPolicy(SessionCreationPolicy.STATELESS))
 *         .addFilterBefore(new ClientHeadersFilter(mapper, ClientHeadersFilter.LOOPBACK_PEER),
 *                 AnonymousAuthenticationFilter.class)
 *         .authorizeHttpRequests(a -> a
 *             .requestMatchers("/healthz").permitAll()
 *             .requestMatchers(HttpMethod.GET, "/orders/**").hasAuthority("SCOPE_read:orders")
 *             .anyRequest().authenticated())
 *         .exceptionHandling(e -> e.authenticationEntryPoint(new HttpStatusEntryPoint(HttpStatus.UNAUTHORIZED)))
 *         .build();
 * }
 * }</pre>
 */
public class ClientHeadersFilter extends OncePerRequestFilter {

    // The gateway's default header names (gateway.yaml: headers.*).
    public static final String CLIENT_ID = "X-Client-Id";
    public static final String CLIENT_KIND = "X-Client-Kind";
    public static final String CLIENT_NAME = "X-Client-Name";
    public static final String USER_ID = "X-User-Id";
    public static final String SCOPES = "X-Client-Scopes";
    public static final String METADATA_PREFIX = "X-Client-Metadata-";
    public static final String METADATA_JSON = "X-Client-Metadata";

    /** Accepts only connections from the pod itself: the sidecar form. */
    public static final Predicate<HttpServletRequest> LOOPBACK_PEER = request -> {
        try {
            return InetAddress.getByName(request.getRemoteAddr()).isLoopbackAddress();
        } catch (UnknownHostException e) {
            return false;
        }
    };

    private static final Log log = LogFactory.getLog(ClientHeadersFilter.class);
    private static final TypeReference<Map<String, Object>> JSON_OBJECT = new TypeReference<>() {};

    private final ObjectMapper mapper;
    private final Predicate<HttpServletRequest> fromGateway;
    private SecurityContextHolderStrategy contexts = SecurityContextHolder.getContextHolderStrategy();

    /** Trusts the headers on every connection (network isolation only). */
    public ClientHeadersFilter(ObjectMapper mapper) {
        this(mapper, request -> true);
    }

    public ClientHeadersFilter(ObjectMapper mapper, Predicate<HttpServletRequest> fromGateway) {
        this.mapper = mapper;
        this.fromGateway = fromGateway;
    }

    public void setSecurityContextHolderStrategy(SecurityContextHolderStrategy strategy) {
        this.contexts = strategy;
    }

    @Override
    protected void doFilterInternal(HttpServletRequest request, HttpServletResponse response, FilterChain chain)
            throws ServletException, IOException {
        String clientId = request.getHeader(CLIENT_ID);
        if (clientId == null || clientId.isBlank()) {
            // No token on an `optional`/`public` route: stay anonymous.
            chain.doFilter(request, response);
            return;
        }
        if (!fromGateway.test(request)) {
            log.warn("ignoring " + CLIENT_ID + " from " + request.getRemoteAddr()
                    + ": not the gateway (is the API port exposed?)");
            chain.doFilter(request, response);
            return;
        }

        GatewayCaller caller = new GatewayCaller(
                clientId,
                request.getHeader(CLIENT_KIND),
                request.getHeader(CLIENT_NAME),
                request.getHeader(USER_ID));

        Set<GrantedAuthority> authorities = new LinkedHashSet<>();
        String scopes = request.getHeader(SCOPES);
        if (scopes != null) {
            Arrays.stream(scopes.trim().split("\\s+"))
                    .filter(s -> !s.isEmpty())
                    .forEach(s -> authorities.add(new SimpleGrantedAuthority("SCOPE_" + s)));
        }

        PreAuthenticatedAuthenticationToken authentication =
                new PreAuthenticatedAuthenticationToken(caller, "N/A", authorities); // authenticated
        authentication.setDetails(new GatewayCallerDetails(metadataHeaders(request), metadataJson(request)));

        SecurityContext context = contexts.createEmptyContext();
        context.setAuthentication(authentication);
        contexts.setContext(context);
        try {
            chain.doFilter(request, response);
        } finally {
            contexts.clearContext();
        }
    }

    /** X-Client-Metadata-Tier: gold becomes "tier" -> "gold" (header form, lower case). */
    private static Map<String, String> metadataHeaders(HttpServletRequest request) {
        Map<String, String> metadata = new TreeMap<>();
        Enumeration<String> names = request.getHeaderNames();
        while (names != null && names.hasMoreElements()) {
            String name = names.nextElement();
            // Header names are case-insensitive (HTTP/2 sends them in lower case).
            if (name.length() > METADATA_PREFIX.length()
                    && name.regionMatches(true, 0, METADATA_PREFIX, 0, METADATA_PREFIX.length())) {
                metadata.put(name.substring(METADATA_PREFIX.length()).toLowerCase(Locale.ROOT), request.getHeader(name));
            }
        }
        return Collections.unmodifiableMap(metadata);
    }

    /**
     * The whole metadata object with its original keys and nested values;
     * empty when the gateway left the header out (larger than
     * headers.max_json_bytes, or a route with metadata_headers).
     */
    private Map<String, Object> metadataJson(HttpServletRequest request) {
        String raw = request.getHeader(METADATA_JSON);
        if (raw == null || raw.isEmpty()) {
            return Map.of();
        }
        try {
            return Collections.unmodifiableMap(mapper.readValue(raw, JSON_OBJECT));
        } catch (IOException | RuntimeException e) {
            log.warn("ignoring malformed " + METADATA_JSON + " header");
            return Map.of();
        }
    }

    /**
     * The caller the gateway vouches for. kind is "client" (client-credentials)
     * or "user"; name is set for clients, userId for users.
     */
    public record GatewayCaller(String id, String kind, String name, String userId) implements Principal, Serializable {
        /** Authentication#getName(): the client id (the application, also for users). */
        @Override
        public String getName() {
            return id;
        }

        public boolean isClient() {
            return "client".equals(kind);
        }

        public boolean isUser() {
            return "user".equals(kind);
        }
    }

    /**
     * Request details: metadata keyed by header form (tenant_id arrives as
     * X-Client-Metadata-Tenant-Id, key "tenant-id") and the full JSON object.
     * Read it with {@code (GatewayCallerDetails) authentication.getDetails()}.
     */
    public record GatewayCallerDetails(Map<String, String> metadata, Map<String, Object> metadataJson)
            implements Serializable {
        public String get(String headerKey) {
            return metadata.get(headerKey.toLowerCase(Locale.ROOT));
        }

        public List<String> keys() {
            return List.copyOf(metadata.keySet());
        }
    }
}
