// Package kubernetes holds the example Kubernetes manifests. It has no Go
// code of its own: its tests decode every manifest strictly into the real
// k8s.io/api types, so a misspelled or misplaced field fails `go test`
// instead of being silently dropped (kubectl's client-side apply, and many
// CD tools, ignore unknown fields) or failing only at deploy time.
package kubernetes

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// object is what every supported kind is: typed, with metadata.
type object interface {
	metav1.Object
	runtime.Object
}

// kinds are the only apiVersion/kind pairs the manifests may use; anything
// else (a typo in kind, a removed API version such as extensions/v1beta1)
// fails. Adding a kind is a deliberate, reviewable change here.
var kinds = map[string]func() object{
	"apps/v1 Deployment":                     func() object { return &appsv1.Deployment{} },
	"v1 Service":                             func() object { return &corev1.Service{} },
	"v1 ConfigMap":                           func() object { return &corev1.ConfigMap{} },
	"v1 Secret":                              func() object { return &corev1.Secret{} },
	"policy/v1 PodDisruptionBudget":          func() object { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2 HorizontalPodAutoscaler": func() object { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"networking.k8s.io/v1 NetworkPolicy":     func() object { return &networkingv1.NetworkPolicy{} },
}

// decode turns one YAML document into its k8s.io/api type, strictly: an
// unknown field, a field in the wrong case, a duplicated key, a value of the
// wrong type (a malformed quantity, a string for an int) and an unsupported
// apiVersion/kind are all errors. It is the same decoding the API server does
// with fieldValidation=Strict (YAML to JSON, then sigs.k8s.io/json strict).
func decode(doc []byte) (object, error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return nil, errors.New("empty document")
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return nil, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		return nil, errors.New("apiVersion and kind are required")
	}
	newObject, ok := kinds[tm.APIVersion+" "+tm.Kind]
	if !ok {
		supported := make([]string, 0, len(kinds))
		for k := range kinds {
			supported = append(supported, k)
		}
		slices.Sort(supported)
		return nil, fmt.Errorf("apiVersion %q kind %q is not supported (one of: %s)", tm.APIVersion, tm.Kind, strings.Join(supported, ", "))
	}
	obj := newObject()
	strictErrs, err := kjson.UnmarshalStrict(js, obj)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if len(strictErrs) > 0 {
		return nil, fmt.Errorf("%s: %w", tm.Kind, errors.Join(strictErrs...))
	}
	return obj, nil
}

// documents splits a multi-document YAML file, dropping documents that hold
// only comments or whitespace (a leading or trailing ---).
func documents(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		js, err := yaml.YAMLToJSON(doc)
		if err == nil && bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue
		}
		docs = append(docs, doc)
	}
}

// TestDecodeRejects keeps the decoder honest: each document differs from a
// valid one by one mistake that a lenient decoder would let through.
func TestDecodeRejects(t *testing.T) {
	const valid = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: x
spec:
  selector:
    matchLabels: {app: x}
  template:
    metadata:
      labels: {app: x}
    spec:
      containers:
        - name: x
          image: x
          ports:
            - containerPort: 8080
          resources:
            requests: {memory: 64Mi}
`
	if _, err := decode([]byte(valid)); err != nil {
		t.Fatalf("the valid document does not decode: %v", err)
	}
	cases := []struct{ name, old, new, want string }{
		{"misspelled field", "containerPort: 8080", "containerPrt: 8080", "unknown field"},
		{"field in the wrong case", "containerPort: 8080", "ContainerPort: 8080", "unknown field"},
		{"field at the wrong level", "          ports:", "          port: 8080\n          ports:", "unknown field"},
		{"misspelled top-level field", "spec:\n  selector", "specs:\n  selector", "unknown field"},
		{"duplicate key", "  name: x\n", "  name: x\n  name: y\n", "already set"},
		{"wrong type", "containerPort: 8080", `containerPort: "eighty"`, "containerPort"},
		{"malformed quantity", "memory: 64Mi", "memory: 64MB", "quantit"},
		{"misspelled kind", "kind: Deployment", "kind: Deploymnet", "not supported"},
		{"removed apiVersion", "apps/v1", "extensions/v1beta1", "not supported"},
		{"unsupported kind", "kind: Deployment", "kind: StatefulSet", "not supported"},
		{"not YAML", "    spec:", "  \tspec: [", "YAML"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := strings.Replace(valid, c.old, c.new, 1)
			if bad == valid {
				t.Fatalf("the case does not change the document (%q not found)", c.old)
			}
			_, err := decode([]byte(bad))
			if err == nil {
				t.Fatalf("decode accepted:\n%s", bad)
			}
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(c.want)) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
	if _, err := decode([]byte("# only a comment\n")); err == nil {
		t.Error("an empty document decoded")
	}
	if _, err := decode([]byte("apiVersion: v1\nmetadata: {name: x}\n")); err == nil {
		t.Error("a document without kind decoded")
	}
}

func TestDocuments(t *testing.T) {
	docs, err := documents([]byte("---\n# comment\n---\nkind: A\n---\nkind: B\n---\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 {
		t.Fatalf("got %d documents, want 2: %q", len(docs), docs)
	}
}
