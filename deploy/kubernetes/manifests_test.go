package kubernetes

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const (
	adminPort       = 9090
	readyPath       = "/readyz"
	healthPath      = "/healthz"
	configKey       = "gateway.yaml"
	defaultShutdown = 30 * time.Second // server.shutdown_timeout when unset
	defaultDrain    = 5 * time.Second  // server.drain_delay when unset
)

// requiredLabels must be on every object (and on every pod template).
var requiredLabels = []string{"app.kubernetes.io/name", "app.kubernetes.io/part-of"}

// externalSecrets are referenced by the manifests but created outside the
// kustomizations (by cert-manager or kubectl).
var externalSecrets = map[string]bool{"metagate-tls": true}

// imageEnv is what deploy/Dockerfile sets with ENV: a gateway.yaml may rely
// on it without the Deployment setting it.
var imageEnv = map[string]bool{"GATEWAY_LISTEN": true, "GATEWAY_ADMIN_LISTEN": true}

// manifest is one decoded document.
type manifest struct {
	file  string // slash path relative to deploy/kubernetes
	index int    // document number within the file, from 1
	obj   object
}

func (m manifest) String() string {
	return fmt.Sprintf("%s#%d (%s %s)", m.file, m.index, m.obj.GetObjectKind().GroupVersionKind().Kind, m.obj.GetName())
}

func isKustomization(name string) bool {
	switch name {
	case "kustomization.yaml", "kustomization.yml", "Kustomization":
		return true
	}
	return false
}

func isYAML(name string) bool {
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

// manifestFiles lists every YAML file under deploy/kubernetes except the
// kustomizations, as slash paths.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !isYAML(d.Name()) || isKustomization(d.Name()) {
			return nil
		}
		files = append(files, filepath.ToSlash(p))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no manifests found under deploy/kubernetes")
	}
	return files
}

// decodeFile decodes every document of one file.
func decodeFile(file string) ([]manifest, error) {
	data, err := os.ReadFile(filepath.FromSlash(file))
	if err != nil {
		return nil, err
	}
	docs, err := documents(data)
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("no documents")
	}
	var out []manifest
	var errs []string
	for i, doc := range docs {
		obj, err := decode(doc)
		if err != nil {
			errs = append(errs, fmt.Sprintf("document %d: %v", i+1, err))
			continue
		}
		out = append(out, manifest{file: file, index: i + 1, obj: obj})
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return out, nil
}

// loadAll decodes every manifest, grouped by directory. Decoding problems
// are reported in detail by TestManifestsDecodeStrictly; other tests stop.
func loadAll(t *testing.T) map[string][]manifest {
	t.Helper()
	byDir := map[string][]manifest{}
	for _, f := range manifestFiles(t) {
		ms, err := decodeFile(f)
		if err != nil {
			t.Fatalf("%s does not decode (see TestManifestsDecodeStrictly): %v", f, err)
		}
		byDir[path.Dir(f)] = append(byDir[path.Dir(f)], ms...)
	}
	return byDir
}

func TestManifestsDecodeStrictly(t *testing.T) {
	seen := map[string]string{}
	for _, f := range manifestFiles(t) {
		t.Run(f, func(t *testing.T) {
			ms, err := decodeFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				if m.obj.GetName() == "" {
					t.Errorf("%s: metadata.name is empty", m)
				}
				checkLabels(t, m.String()+" metadata", m.obj.GetLabels())
				// kind/namespace/name must be unique within a directory (a kustomization).
				key := fmt.Sprintf("%s %s %s/%s", path.Dir(f), m.obj.GetObjectKind().GroupVersionKind().Kind, m.obj.GetNamespace(), m.obj.GetName())
				if prev, dup := seen[key]; dup {
					t.Errorf("%s: same kind and name as %s", m, prev)
				}
				seen[key] = m.String()
				if d, ok := m.obj.(*appsv1.Deployment); ok {
					checkDeployment(t, m, d)
				}
			}
		})
	}
}

func checkLabels(t *testing.T, where string, l map[string]string) {
	t.Helper()
	for _, k := range requiredLabels {
		if l[k] == "" {
			t.Errorf("%s: label %s is missing", where, k)
		}
	}
}

func checkDeployment(t *testing.T, m manifest, d *appsv1.Deployment) {
	t.Helper()
	checkLabels(t, m.String()+" spec.template.metadata", d.Spec.Template.Labels)
	if d.Spec.Selector == nil || len(d.Spec.Selector.MatchLabels)+len(d.Spec.Selector.MatchExpressions) == 0 {
		t.Errorf("%s: spec.selector is empty", m)
		return
	}
	if !selects(t, d.Spec.Selector, d.Spec.Template.Labels) {
		t.Errorf("%s: spec.selector does not match spec.template.metadata.labels", m)
	}
	if len(d.Spec.Template.Spec.Containers) == 0 {
		t.Errorf("%s: no containers", m)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Image == "" {
			t.Errorf("%s: container %s has no image", m, c.Name)
		}
		for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
			if p != nil && p.HTTPGet != nil {
				if _, err := resolvePort(c, p.HTTPGet.Port); err != nil {
					t.Errorf("%s: container %s: probe: %v", m, c.Name, err)
				}
			}
		}
	}
}

func selects(t *testing.T, sel *metav1.LabelSelector, l map[string]string) bool {
	t.Helper()
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Errorf("label selector: %v", err)
		return false
	}
	return !s.Empty() && s.Matches(labels.Set(l))
}

// resolvePort returns the number of a probe port: named ports are looked up
// in the probed container's own ports, as the kubelet does.
func resolvePort(c corev1.Container, p intstr.IntOrString) (int32, error) {
	if p.Type == intstr.Int {
		return p.IntVal, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("port %q is not a named port of container %s", p.StrVal, c.Name)
}

// kustomization lists the fields these kustomizations may use; it is decoded
// strictly too, so a typo ("resource:") fails. Add fields as they are needed.
type kustomization struct {
	APIVersion        string            `json:"apiVersion"`
	Kind              string            `json:"kind"`
	Namespace         string            `json:"namespace,omitempty"`
	NamePrefix        string            `json:"namePrefix,omitempty"`
	NameSuffix        string            `json:"nameSuffix,omitempty"`
	Resources         []string          `json:"resources,omitempty"`
	Components        []string          `json:"components,omitempty"`
	CommonAnnotations map[string]string `json:"commonAnnotations,omitempty"`
	Labels            []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
		IncludeTemplates bool              `json:"includeTemplates,omitempty"`
	} `json:"labels,omitempty"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
	Patches []struct {
		Path   string         `json:"path,omitempty"`
		Patch  string         `json:"patch,omitempty"`
		Target map[string]any `json:"target,omitempty"`
	} `json:"patches,omitempty"`
	Replicas []struct {
		Name  string `json:"name"`
		Count int    `json:"count"`
	} `json:"replicas,omitempty"`
}

// TestKustomizations checks that every kustomization lists only files (or
// kustomization directories) that exist, and that every manifest in its
// directory is listed, so a new file is not silently left out of a deploy.
func TestKustomizations(t *testing.T) {
	found := 0
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !isKustomization(d.Name()) {
			return nil
		}
		found++
		t.Run(filepath.ToSlash(p), func(t *testing.T) { checkKustomization(t, p) })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == 0 {
		t.Fatal("no kustomization.yaml under deploy/kubernetes")
	}
}

func checkKustomization(t *testing.T, file string) {
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		t.Fatalf("not valid YAML: %v", err)
	}
	var k kustomization
	strictErrs, err := kjson.UnmarshalStrict(js, &k)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range strictErrs {
		t.Errorf("%v", e)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("apiVersion/kind = %q/%q, want kustomize.config.k8s.io/v1beta1/Kustomization", k.APIVersion, k.Kind)
	}
	if len(k.Resources) == 0 {
		t.Error("resources is empty")
	}
	dir := filepath.Dir(file)
	listed := map[string]bool{}
	check := func(field, ref string) {
		if strings.Contains(ref, "://") || strings.HasPrefix(ref, "github.com/") {
			return // remote: not checked here
		}
		if filepath.IsAbs(ref) {
			t.Errorf("%s: %q: use a path relative to the kustomization", field, ref)
			return
		}
		target := filepath.Join(dir, filepath.FromSlash(ref))
		st, err := os.Stat(target)
		switch {
		case err != nil:
			t.Errorf("%s: %q does not exist", field, ref)
		case st.IsDir():
			if _, err := os.Stat(filepath.Join(target, "kustomization.yaml")); err != nil {
				t.Errorf("%s: %q is a directory without kustomization.yaml", field, ref)
			}
		default:
			if !isYAML(ref) {
				t.Errorf("%s: %q is not a YAML file", field, ref)
			}
			if filepath.Dir(target) == dir {
				listed[filepath.Base(target)] = true
			}
		}
	}
	for _, r := range k.Resources {
		check("resources", r)
	}
	for _, r := range k.Components {
		check("components", r)
	}
	for _, p := range k.Patches {
		if p.Path != "" {
			check("patches", p.Path)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() && isYAML(e.Name()) && !isKustomization(e.Name()) && !listed[e.Name()] {
			t.Errorf("%s is in the directory but not listed in resources or patches", e.Name())
		}
	}
}

// gatewayConfig is the part of gateway.yaml the deploy checks look at.
// Decoded leniently: the gateway's own `gateway check` validates the whole
// schema; here it must be YAML with server and routes.
type gatewayConfig struct {
	Server *struct {
		Listen          string `json:"listen"`
		AdminListen     string `json:"admin_listen"`
		ShutdownTimeout string `json:"shutdown_timeout"`
		DrainDelay      string `json:"drain_delay"`
	} `json:"server"`
	Metadata struct {
		Source string `json:"source"`
		Auth0  struct {
			ClientSecretFile string `json:"client_secret_file"`
		} `json:"auth0"`
	} `json:"metadata"`
	Routes []map[string]any `json:"routes"`
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expandDefaults replaces ${VAR:-default} with its default and leaves
// ${VAR} for the env check: enough to read the literal settings.
func expandDefaults(s string) string {
	return envRef.ReplaceAllStringFunc(s, func(m string) string {
		sub := envRef.FindStringSubmatch(m)
		if sub[2] == "" {
			return m
		}
		return sub[3]
	})
}

// requiredEnv lists the ${VAR} references without a default: the gateway
// refuses to start when one is unset.
func requiredEnv(doc string) []string {
	var vars []string
	for _, line := range strings.Split(doc, "\n") {
		if i := strings.Index(line, "#"); i >= 0 && !strings.Contains(line[:i], "${") {
			line = line[:i] // a comment, not a value
		}
		for _, sub := range envRef.FindAllStringSubmatch(line, -1) {
			if sub[2] == "" && !slices.Contains(vars, sub[1]) {
				vars = append(vars, sub[1])
			}
		}
	}
	return vars
}

func parseGatewayConfig(doc string) (*gatewayConfig, error) {
	var cfg gatewayConfig
	if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	if cfg.Server == nil {
		return nil, fmt.Errorf("no server: section")
	}
	if len(cfg.Routes) == 0 {
		return nil, fmt.Errorf("no routes: (at least one route is required)")
	}
	return &cfg, nil
}

// TestGatewayConfigs checks every ConfigMap key named gateway.yaml.
func TestGatewayConfigs(t *testing.T) {
	n := 0
	for _, ms := range loadAll(t) {
		for _, m := range ms {
			cm, ok := m.obj.(*corev1.ConfigMap)
			if !ok {
				continue
			}
			doc, ok := cm.Data[configKey]
			if !ok {
				continue
			}
			n++
			cfg, err := parseGatewayConfig(doc)
			if err != nil {
				t.Errorf("%s: %s: %v", m, configKey, err)
				continue
			}
			// In a pod, both listeners must bind an address other pods and the
			// kubelet can reach; the 127.0.0.1 defaults would fail every probe.
			for key, v := range map[string]string{"server.listen": cfg.Server.Listen, "server.admin_listen": cfg.Server.AdminListen} {
				v = expandDefaults(v)
				if v == "" {
					t.Errorf("%s: %s is unset: the default binds 127.0.0.1, unreachable in a pod", m, key)
					continue
				}
				if strings.Contains(v, "${") {
					continue // from the environment, checked with the Deployment
				}
				host, port, err := net.SplitHostPort(v)
				if err != nil {
					t.Errorf("%s: %s %q: %v", m, key, v, err)
					continue
				}
				if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
					t.Errorf("%s: %s %q binds loopback: unreachable from outside the pod", m, key, v)
				}
				if key == "server.admin_listen" && port != fmt.Sprint(adminPort) {
					t.Errorf("%s: %s %q: the probes expect port %d", m, key, v, adminPort)
				}
			}
			for i, r := range cfg.Routes {
				if r["upstreams"] == nil {
					t.Errorf("%s: routes[%d] has no upstreams", m, i)
				}
				if r["match"] == nil {
					t.Errorf("%s: routes[%d] has no match", m, i)
				}
			}
		}
	}
	if n == 0 {
		t.Fatalf("no ConfigMap has a %s key", configKey)
	}
}

// isGatewayImage: the repository's last path element is "gateway"
// (ghcr.io/metagate/gateway:0.1.0, gateway@sha256:...).
func isGatewayImage(image string) bool {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return path.Base(image) == "gateway"
}

type index struct {
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
}

func indexDir(ms []manifest) index {
	ix := index{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, m := range ms {
		switch o := m.obj.(type) {
		case *corev1.ConfigMap:
			ix.configMaps[o.Name] = o
		case *corev1.Secret:
			ix.secrets[o.Name] = o
		}
	}
	return ix
}

func (ix index) secretHas(name, key string) bool {
	s := ix.secrets[name]
	if s == nil {
		return false
	}
	_, inData := s.Data[key]
	_, inString := s.StringData[key]
	return inData || inString
}

// TestGatewayContainers checks every container running the gateway image:
// probes on the admin port, drain timing, hardening, and that its mounted
// gateway.yaml can start in that container (every ${VAR} set, the secret
// file mounted).
func TestGatewayContainers(t *testing.T) {
	found := 0
	for _, ms := range loadAll(t) {
		ix := indexDir(ms)
		for _, m := range ms {
			d, ok := m.obj.(*appsv1.Deployment)
			if !ok {
				continue
			}
			pod := d.Spec.Template.Spec
			for _, c := range pod.Containers {
				if !isGatewayImage(c.Image) {
					continue
				}
				found++
				where := fmt.Sprintf("%s container %s", m, c.Name)
				checkProbe(t, where+" readinessProbe", c, c.ReadinessProbe, readyPath)
				checkProbe(t, where+" livenessProbe", c, c.LivenessProbe, healthPath)
				checkHardening(t, where, pod, c)
				checkGatewayConfig(t, where, ix, pod, c)
			}
			for _, c := range pod.InitContainers {
				if isGatewayImage(c.Image) {
					t.Errorf("%s: the gateway runs as an init container %s; use a regular container", m, c.Name)
				}
			}
		}
	}
	if found < 2 {
		t.Fatalf("found %d gateway containers, want at least 2 (sidecar and ingress)", found)
	}
}

func checkProbe(t *testing.T, where string, c corev1.Container, p *corev1.Probe, wantPath string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: want an httpGet probe on port %d path %s", where, adminPort, wantPath)
		return
	}
	if p.HTTPGet.Path != wantPath {
		t.Errorf("%s: path %q, want %q", where, p.HTTPGet.Path, wantPath)
	}
	port, err := resolvePort(c, p.HTTPGet.Port)
	if err != nil {
		t.Errorf("%s: %v", where, err)
	} else if port != adminPort {
		t.Errorf("%s: port %d, want the admin port %d", where, port, adminPort)
	}
	if p.HTTPGet.Scheme != "" && p.HTTPGet.Scheme != corev1.URISchemeHTTP {
		t.Errorf("%s: scheme %s: the admin listener is plain HTTP", where, p.HTTPGet.Scheme)
	}
}

func checkHardening(t *testing.T, where string, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil {
		t.Errorf("%s: no securityContext", where)
		return
	}
	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil && pod.SecurityContext != nil {
		nonRoot = pod.SecurityContext.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		t.Errorf("%s: runAsNonRoot is not true", where)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem is not true", where)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false", where)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: capabilities.drop does not include ALL", where)
	}
}

// configPath is the --config argument (the image's CMD default otherwise).
func configPath(c corev1.Container) string {
	args := append(slices.Clone(c.Command), c.Args...)
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			return v
		}
		if (a == "--config" || a == "-config") && i+1 < len(args) {
			return args[i+1]
		}
	}
	return "/etc/gateway/gateway.yaml"
}

// mountFor returns the volume whose mount holds file (the deepest mount
// wins), and the file's path inside that volume.
func mountFor(pod corev1.PodSpec, c corev1.Container, file string) (*corev1.Volume, string) {
	var best *corev1.VolumeMount
	var rel string
	for i := range c.VolumeMounts {
		vm := &c.VolumeMounts[i]
		r, ok := strings.CutPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/")
		if !ok || (best != nil && len(vm.MountPath) <= len(best.MountPath)) {
			continue
		}
		best, rel = vm, r
		if vm.SubPath != "" {
			rel = path.Join(vm.SubPath, r)
		}
	}
	if best == nil {
		return nil, ""
	}
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == best.Name {
			return &pod.Volumes[i], rel
		}
	}
	return nil, ""
}

// keyFor maps a file name inside a configMap/secret volume back to its key.
func keyFor(items []corev1.KeyToPath, file string) (string, bool) {
	if len(items) == 0 {
		return file, true
	}
	for _, it := range items {
		if it.Path == file {
			return it.Key, true
		}
	}
	return "", false
}

func checkGatewayConfig(t *testing.T, where string, ix index, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	file := configPath(c)
	vol, rel := mountFor(pod, c, file)
	if vol == nil || vol.ConfigMap == nil {
		t.Errorf("%s: --config %s is not in a mounted ConfigMap volume", where, file)
		return
	}
	key, ok := keyFor(vol.ConfigMap.Items, rel)
	cm := ix.configMaps[vol.ConfigMap.Name]
	if !ok || cm == nil {
		t.Errorf("%s: --config %s: ConfigMap %s (key for %q) is not in this kustomization", where, file, vol.ConfigMap.Name, rel)
		return
	}
	doc, ok := cm.Data[key]
	if !ok {
		t.Errorf("%s: ConfigMap %s has no key %s", where, cm.Name, key)
		return
	}
	cfg, err := parseGatewayConfig(doc)
	if err != nil {
		t.Errorf("%s: ConfigMap %s key %s: %v", where, cm.Name, key, err)
		return
	}

	// Every ${VAR} without a default must be set in the container, or the
	// gateway exits at start.
	env := map[string]bool{}
	for k := range imageEnv {
		env[k] = true
	}
	for _, e := range c.Env {
		env[e.Name] = true
	}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			if src := ix.configMaps[ef.ConfigMapRef.Name]; src != nil {
				for k := range src.Data {
					env[ef.Prefix+k] = true
				}
			}
		case ef.SecretRef != nil:
			if src := ix.secrets[ef.SecretRef.Name]; src != nil {
				for k := range src.Data {
					env[ef.Prefix+k] = true
				}
				for k := range src.StringData {
					env[ef.Prefix+k] = true
				}
			}
		}
	}
	for _, v := range requiredEnv(doc) {
		if !env[v] {
			t.Errorf("%s: gateway.yaml needs ${%s}, which the container does not set", where, v)
		}
	}
	admin := expandDefaults(cfg.Server.AdminListen)
	if admin == "" || strings.Contains(admin, "127.0.0.1") || strings.Contains(admin, "localhost") {
		t.Errorf("%s: server.admin_listen %q: the probes need 0.0.0.0:%d", where, cfg.Server.AdminListen, adminPort)
	}

	// The client secret file must be in a mounted Secret holding that key.
	if f := expandDefaults(cfg.Metadata.Auth0.ClientSecretFile); f != "" && !strings.Contains(f, "${") {
		sv, rel := mountFor(pod, c, f)
		switch {
		case sv == nil || sv.Secret == nil:
			t.Errorf("%s: metadata.auth0.client_secret_file %s is not in a mounted Secret volume", where, f)
		default:
			key, ok := keyFor(sv.Secret.Items, rel)
			if !ok || (!externalSecrets[sv.Secret.SecretName] && !ix.secretHas(sv.Secret.SecretName, key)) {
				t.Errorf("%s: metadata.auth0.client_secret_file %s: Secret %s has no key for %q", where, f, sv.Secret.SecretName, rel)
			}
		}
	}

	// Drain: preStop sleep, then SIGTERM, drain_delay, and up to
	// shutdown_timeout for in-flight requests, all inside
	// terminationGracePeriodSeconds.
	shutdown := defaultShutdown
	if s := expandDefaults(cfg.Server.ShutdownTimeout); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Errorf("%s: server.shutdown_timeout %q: %v", where, s, err)
			return
		}
		shutdown = d
	}
	drain := defaultDrain
	if s := expandDefaults(cfg.Server.DrainDelay); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Errorf("%s: server.drain_delay %q: %v", where, s, err)
			return
		}
		drain = d
	}
	var sleep time.Duration
	switch {
	case c.Lifecycle == nil || c.Lifecycle.PreStop == nil:
		t.Errorf("%s: no lifecycle.preStop: the pod stops accepting before load balancers stop sending", where)
	case c.Lifecycle.PreStop.Exec != nil:
		t.Errorf("%s: preStop exec cannot run in the distroless image (no shell, no sleep); use preStop.sleep", where)
	case c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds <= 0:
		t.Errorf("%s: preStop is not a positive sleep", where)
	default:
		sleep = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	grace := 30 * time.Second // the Kubernetes default
	if pod.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	}
	if grace <= sleep+drain+shutdown {
		t.Errorf("%s: terminationGracePeriodSeconds %s must exceed preStop sleep %s + server.drain_delay %s + server.shutdown_timeout %s", where, grace, sleep, drain, shutdown)
	}
}

// TestReferences checks that objects in one kustomization point at each
// other correctly: selectors select pods, ports exist, ConfigMaps, Secrets
// and their keys exist, the HPA's target exists and requests CPU.
func TestReferences(t *testing.T) {
	for dir, ms := range loadAll(t) {
		ix := indexDir(ms)
		var deps []*appsv1.Deployment
		for _, m := range ms {
			if d, ok := m.obj.(*appsv1.Deployment); ok {
				deps = append(deps, d)
			}
		}
		selected := func(sel *metav1.LabelSelector) []*appsv1.Deployment {
			var out []*appsv1.Deployment
			for _, d := range deps {
				if selects(t, sel, d.Spec.Template.Labels) {
					out = append(out, d)
				}
			}
			return out
		}
		for _, m := range ms {
			switch o := m.obj.(type) {
			case *appsv1.Deployment:
				checkPodRefs(t, m.String(), ix, o.Spec.Template.Spec)
			case *corev1.Service:
				if len(o.Spec.Selector) == 0 {
					t.Errorf("%s: no selector", m)
					continue
				}
				ds := selected(&metav1.LabelSelector{MatchLabels: o.Spec.Selector})
				if len(ds) == 0 {
					t.Errorf("%s: selector %v matches no Deployment in %s", m, o.Spec.Selector, dir)
					continue
				}
				for _, p := range o.Spec.Ports {
					target := p.TargetPort
					if target.Type == intstr.Int && target.IntVal == 0 {
						target = intstr.FromInt32(p.Port)
					}
					for _, d := range ds {
						if !podHasPort(d.Spec.Template.Spec, target) {
							t.Errorf("%s: targetPort %s is not a container port of Deployment %s", m, target.String(), d.Name)
						}
					}
				}
			case *policyv1.PodDisruptionBudget:
				if len(selected(o.Spec.Selector)) == 0 {
					t.Errorf("%s: selector matches no Deployment in %s", m, dir)
				}
			case *networkingv1.NetworkPolicy:
				if o.Namespace != "" {
					continue // meant for another namespace's workloads (upstreams/)
				}
				if len(selected(&o.Spec.PodSelector)) == 0 {
					t.Errorf("%s: podSelector matches no Deployment in %s", m, dir)
				}
			case *autoscalingv2.HorizontalPodAutoscaler:
				ref := o.Spec.ScaleTargetRef
				var target *appsv1.Deployment
				for _, d := range deps {
					if ref.Kind == "Deployment" && ref.APIVersion == "apps/v1" && d.Name == ref.Name {
						target = d
					}
				}
				if target == nil {
					t.Errorf("%s: scaleTargetRef %s %s/%s is not in %s", m, ref.APIVersion, ref.Kind, ref.Name, dir)
					continue
				}
				if o.Spec.MinReplicas == nil || *o.Spec.MinReplicas > o.Spec.MaxReplicas {
					t.Errorf("%s: minReplicas must be set and at most maxReplicas", m)
				}
				// CPU utilisation is relative to requests: without them the HPA never scales.
				for _, c := range target.Spec.Template.Spec.Containers {
					if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
						t.Errorf("%s: Deployment %s container %s has no requests.cpu", m, target.Name, c.Name)
					}
				}
			}
		}
	}
}

func podHasPort(pod corev1.PodSpec, p intstr.IntOrString) bool {
	for _, c := range pod.Containers {
		for _, cp := range c.Ports {
			if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
				return true
			}
		}
	}
	return false
}

func checkPodRefs(t *testing.T, where string, ix index, pod corev1.PodSpec) {
	t.Helper()
	isTrue := func(b *bool) bool { return b != nil && *b }
	configMap := func(what, name, key string, optional *bool) {
		cm := ix.configMaps[name]
		switch {
		case isTrue(optional):
		case cm == nil:
			t.Errorf("%s: %s: ConfigMap %s is not in this kustomization", where, what, name)
		case key != "":
			_, inData := cm.Data[key]
			_, inBinary := cm.BinaryData[key]
			if !inData && !inBinary {
				t.Errorf("%s: %s: ConfigMap %s has no key %s", where, what, name, key)
			}
		}
	}
	secret := func(what, name, key string, optional *bool) {
		switch {
		case isTrue(optional) || externalSecrets[name]:
		case ix.secrets[name] == nil:
			t.Errorf("%s: %s: Secret %s is not in this kustomization", where, what, name)
		case key != "" && !ix.secretHas(name, key):
			t.Errorf("%s: %s: Secret %s has no key %s", where, what, name, key)
		}
	}
	volumes := map[string]bool{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
		switch {
		case v.ConfigMap != nil:
			configMap("volume "+v.Name, v.ConfigMap.Name, "", v.ConfigMap.Optional)
			for _, it := range v.ConfigMap.Items {
				configMap("volume "+v.Name, v.ConfigMap.Name, it.Key, v.ConfigMap.Optional)
			}
		case v.Secret != nil:
			secret("volume "+v.Name, v.Secret.SecretName, "", v.Secret.Optional)
			for _, it := range v.Secret.Items {
				secret("volume "+v.Name, v.Secret.SecretName, it.Key, v.Secret.Optional)
			}
		}
	}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		for _, vm := range c.VolumeMounts {
			if !volumes[vm.Name] {
				t.Errorf("%s: container %s mounts undeclared volume %s", where, c.Name, vm.Name)
			}
		}
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef != nil {
				configMap("container "+c.Name+" envFrom", ef.ConfigMapRef.Name, "", ef.ConfigMapRef.Optional)
			}
			if ef.SecretRef != nil {
				secret("container "+c.Name+" envFrom", ef.SecretRef.Name, "", ef.SecretRef.Optional)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				configMap("container "+c.Name+" env "+e.Name, r.Name, r.Key, r.Optional)
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				secret("container "+c.Name+" env "+e.Name, r.Name, r.Key, r.Optional)
			}
		}
	}
}
