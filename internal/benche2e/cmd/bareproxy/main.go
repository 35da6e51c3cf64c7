// Command bareproxy is the baseline of the end-to-end benchmark: a bare
// httputil.ReverseProxy (Rewrite with SetURL and SetXForwarded) with the
// gateway's upstream transport settings (proxy.NewTransport(512)), and
// nothing else. It prints its URL on the first line of stdout.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	upstream := flag.String("upstream", "", "upstream base URL")
	flag.Parse()
	target, err := url.Parse(*upstream)
	if err != nil || target.Host == "" {
		log.Fatalf("bareproxy: -upstream %q is not a URL", *upstream)
	}
	// The same settings as proxy.NewTransport(512).
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 1024
	tr.MaxIdleConnsPerHost = 256
	tr.MaxConnsPerHost = 512
	tr.IdleConnTimeout = 90 * time.Second
	tr.ResponseHeaderTimeout = 60 * time.Second
	rp := &httputil.ReverseProxy{Transport: tr, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.SetXForwarded()
	}}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("http://%s\n", ln.Addr())
	log.Fatal((&http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}).Serve(ln))
}
