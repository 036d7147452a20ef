package functions

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/openfaas/faas-provider/types"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

const ns = "openfaas-fn"

func testProvider(objects ...any) (*Provider, *fake.Clientset) {
	client := fake.NewClientset()
	for _, o := range objects {
		s := o.(*corev1.Secret)
		if _, err := client.CoreV1().Secrets(s.Namespace).Create(
			nil, s, metav1.CreateOptions{}); err != nil {
			panic(err)
		}
	}
	p := &Provider{
		Client: client,
		Config: Config{Namespace: ns, RuntimePort: 8080, HTTPProbe: true},
		Name:   "test", Version: "v1", SHA: "abc",
		Log: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	}
	return p, client
}

func router(p *Provider) *mux.Router {
	h := p.Handlers(nil)
	r := mux.NewRouter()
	r.HandleFunc("/system/functions", h.FunctionLister).Methods(http.MethodGet)
	r.HandleFunc("/system/functions", h.DeployFunction).Methods(http.MethodPost)
	r.HandleFunc("/system/functions", h.UpdateFunction).Methods(http.MethodPut)
	r.HandleFunc("/system/functions", h.DeleteFunction).Methods(http.MethodDelete)
	r.HandleFunc("/system/function/{name}", h.FunctionStatus).Methods(http.MethodGet)
	r.HandleFunc("/system/scale-function/{name}", h.ScaleFunction).Methods(http.MethodPost)
	r.HandleFunc("/system/namespaces", h.ListNamespaces).Methods(http.MethodGet)
	r.HandleFunc("/system/info", h.Info).Methods(http.MethodGet)
	return r
}

func call(t *testing.T, r http.Handler, method, path string, body any) *httptest.ResponseRecorder {
	t.Helper()
	var reader io.Reader = http.NoBody
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		reader = bytes.NewReader(data)
	}
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(method, path, reader))
	return w
}

func request() types.FunctionDeployment {
	labels := map[string]string{"com.openfaas.scale.min": "2", "app.kubernetes.io/part-of": "vsearch"}
	annotations := map[string]string{"com.openfaas.health.http.path": "/_/health"}
	return types.FunctionDeployment{
		Service:                "transcribe",
		Image:                  "127.0.0.1:5001/vsearch/transcribe:abc",
		Namespace:              ns,
		EnvVars:                map[string]string{"b": "2", "a": "1"},
		Labels:                 &labels,
		Annotations:            &annotations,
		Secrets:                []string{"s3"},
		Limits:                 &types.FunctionResources{Memory: "512Mi", CPU: "1"},
		Requests:               &types.FunctionResources{Memory: "256Mi", CPU: "50m"},
		ReadOnlyRootFilesystem: true,
	}
}

func s3Secret() *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "s3", Namespace: ns},
		Data:       map[string][]byte{"secret-key": []byte("x"), "access-key": []byte("y")},
	}
}

func TestDeployMakesTheDeploymentAndServiceFaasNetesMakes(t *testing.T) {
	p, client := testProvider(s3Secret())
	r := router(p)
	if w := call(t, r, http.MethodPost, "/system/functions", request()); w.Code != http.StatusAccepted {
		t.Fatalf("deploy: %d %s", w.Code, w.Body)
	}
	d, err := client.AppsV1().Deployments(ns).Get(context.Background(), "transcribe", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 2 || d.Labels[FunctionLabel] != "transcribe" || len(d.Labels) != 1 {
		t.Fatalf("replicas %d labels %v", *d.Spec.Replicas, d.Labels)
	}
	tpl := d.Spec.Template
	if tpl.Labels["app.kubernetes.io/part-of"] != "vsearch" || tpl.Labels[FunctionLabel] != "transcribe" {
		t.Fatalf("template labels %v", tpl.Labels)
	}
	if d.Annotations["prometheus.io.scrape"] != "false" || tpl.Annotations["prometheus.io.scrape"] != "false" {
		t.Fatalf("annotations %v", d.Annotations)
	}
	c := tpl.Spec.Containers[0]
	if c.Env[0].Name != "a" || c.Env[1].Name != "b" {
		t.Fatalf("env not sorted: %v", c.Env)
	}
	if c.ReadinessProbe.HTTPGet.Path != HealthPath || c.LivenessProbe.PeriodSeconds != 2 ||
		c.LivenessProbe.InitialDelaySeconds != 2 || c.LivenessProbe.TimeoutSeconds != 1 ||
		c.LivenessProbe.FailureThreshold != 3 {
		t.Fatalf("probe %+v", c.LivenessProbe)
	}
	if c.Resources.Limits.Memory().String() != "512Mi" || c.Resources.Requests.Cpu().String() != "50m" {
		t.Fatalf("resources %+v", c.Resources)
	}
	if !*c.SecurityContext.ReadOnlyRootFilesystem || c.ImagePullPolicy != corev1.PullAlways {
		t.Fatalf("security %+v pull %s", c.SecurityContext, c.ImagePullPolicy)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	want := map[string]string{"temp": "/tmp", "transcribe-projected-secrets": SecretsMount}
	if !reflect.DeepEqual(mounts, want) {
		t.Fatalf("mounts %v", mounts)
	}
	items := tpl.Spec.Volumes[1].Projected.Sources[0].Secret.Items
	if len(items) != 2 || items[0].Key != "access-key" || items[1].Path != "secret-key" {
		t.Fatalf("secret items %v", items)
	}
	svc, err := client.CoreV1().Services(ns).Get(context.Background(), "transcribe", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Selector[FunctionLabel] != "transcribe" || svc.Spec.Ports[0].Port != 8080 ||
		svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Fatalf("service %+v", svc.Spec)
	}
}

func TestDeployRefusesMissingSecretBadNameAndOtherNamespace(t *testing.T) {
	p, _ := testProvider()
	r := router(p)
	if w := call(t, r, http.MethodPost, "/system/functions", request()); w.Code != http.StatusBadRequest {
		t.Fatalf("missing secret: %d", w.Code)
	}
	bad := request()
	bad.Secrets, bad.Service = nil, "Not_A_Name"
	if w := call(t, r, http.MethodPost, "/system/functions", bad); w.Code != http.StatusBadRequest {
		t.Fatalf("bad name: %d", w.Code)
	}
	other := request()
	other.Secrets, other.Namespace = nil, "default"
	if w := call(t, r, http.MethodPost, "/system/functions", other); w.Code != http.StatusBadRequest {
		t.Fatalf("other namespace: %d", w.Code)
	}
}

func TestListDescribeScaleToZeroUpdateDelete(t *testing.T) {
	p, client := testProvider(s3Secret())
	r := router(p)
	call(t, r, http.MethodPost, "/system/functions", request())
	// The Deployment controller annotates the Deployment; a status shows the function's own.
	d, _ := client.AppsV1().Deployments(ns).Get(context.Background(), "transcribe", metav1.GetOptions{})
	d.Annotations["deployment.kubernetes.io/revision"] = "1"
	if _, err := client.AppsV1().Deployments(ns).Update(context.Background(), d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	w := call(t, r, http.MethodGet, "/system/functions?namespace="+ns, nil)
	var list []types.FunctionStatus
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || len(list) != 1 {
		t.Fatalf("list: %v %s", err, w.Body)
	}
	got := list[0]
	if got.Name != "transcribe" || got.Replicas != 2 || got.Image != request().Image ||
		got.EnvVars["a"] != "1" || got.Secrets[0] != "s3" || !got.ReadOnlyRootFilesystem ||
		got.Limits.Memory != "512Mi" || (*got.Annotations)["prometheus.io.scrape"] != "false" ||
		(*got.Annotations)["deployment.kubernetes.io/revision"] != "" {
		t.Fatalf("status %+v", got)
	}
	if w := call(t, r, http.MethodGet, "/system/function/nope", nil); w.Code != http.StatusNotFound {
		t.Fatalf("describe missing: %d", w.Code)
	}
	scale := types.ScaleServiceRequest{ServiceName: "transcribe", Replicas: 0}
	if w := call(t, r, http.MethodPost, "/system/scale-function/transcribe", scale); w.Code != http.StatusAccepted {
		t.Fatalf("scale: %d %s", w.Code, w.Body)
	}
	d, _ = client.AppsV1().Deployments(ns).Get(context.Background(), "transcribe", metav1.GetOptions{})
	if *d.Spec.Replicas != 0 {
		t.Fatalf("scaled to %d", *d.Spec.Replicas)
	}
	updated := request()
	updated.Image = "127.0.0.1:5001/vsearch/transcribe:def"
	if w := call(t, r, http.MethodPut, "/system/functions", updated); w.Code != http.StatusAccepted {
		t.Fatalf("update: %d %s", w.Code, w.Body)
	}
	w = call(t, r, http.MethodGet, "/system/function/transcribe", nil)
	var one types.FunctionStatus
	if err := json.Unmarshal(w.Body.Bytes(), &one); err != nil || one.Image != updated.Image || one.Replicas != 2 {
		t.Fatalf("after update: %v %+v", err, one)
	}
	del := types.DeleteFunctionRequest{FunctionName: "transcribe"}
	if w := call(t, r, http.MethodDelete, "/system/functions", del); w.Code != http.StatusAccepted {
		t.Fatalf("delete: %d %s", w.Code, w.Body)
	}
	if w := call(t, r, http.MethodDelete, "/system/functions", del); w.Code != http.StatusNotFound {
		t.Fatalf("delete again: %d", w.Code)
	}
	if _, err := client.CoreV1().Services(ns).Get(context.Background(), "transcribe", metav1.GetOptions{}); err == nil {
		t.Fatal("service survived the delete")
	}
}

func TestInfoNamespacesAndResolver(t *testing.T) {
	p, client := testProvider()
	r := router(p)
	var info types.ProviderInfo
	_ = json.Unmarshal(call(t, r, http.MethodGet, "/system/info", nil).Body.Bytes(), &info)
	if info.Name != "test" || info.Version.SHA != "abc" || info.Orchestration != "kubernetes" {
		t.Fatalf("info %+v", info)
	}
	var namespaces []string
	_ = json.Unmarshal(call(t, r, http.MethodGet, "/system/namespaces", nil).Body.Bytes(), &namespaces)
	if !reflect.DeepEqual(namespaces, []string{ns}) {
		t.Fatalf("namespaces %v", namespaces)
	}
	svc := MakeService(types.FunctionDeployment{Service: "search", Namespace: ns}, p.Config)
	svc.Spec.ClusterIP = "10.96.0.42"
	if _, err := client.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res := Resolver{Client: client, Config: p.Config, Mode: "clusterip", ClusterDomain: "cluster.local"}
	if u, err := res.Resolve("search"); err != nil || u.String() != "http://10.96.0.42:8080" {
		t.Fatalf("clusterip: %v %v", u, err)
	}
	res.Mode = "dns"
	if u, err := res.Resolve("search.openfaas-fn"); err != nil ||
		u.String() != "http://search.openfaas-fn.svc.cluster.local:8080" {
		t.Fatalf("dns: %v %v", u, err)
	}
	if _, err := res.Resolve("search.default"); err == nil {
		t.Fatal("resolved outside the function namespace")
	}
}

func endpointSlice(name, service string, endpoints ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: service},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   endpoints,
	}
}

func endpoint(ip string, ready, terminating bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{ip},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready, Terminating: &terminating},
	}
}

// The default resolver goes to a ready pod's IP, never a not-ready or terminating one, nor
// another function's; with none ready it waits, then names the cause.
func TestResolverPicksAReadyEndpoint(t *testing.T) {
	p, client := testProvider()
	ctx := context.Background()
	for _, slice := range []*discoveryv1.EndpointSlice{
		endpointSlice("search-a", "search",
			endpoint("10.244.0.7", false, false), endpoint("10.244.0.8", true, false)),
		endpointSlice("search-b", "search", endpoint("10.244.0.9", true, true)),
		endpointSlice("other-a", "other", endpoint("10.244.0.10", true, false)),
	} {
		if _, err := client.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var offered int
	res := Resolver{
		Client: client, Config: p.Config, EndpointWait: 300 * time.Millisecond,
		Pick: func(n int) int { offered = n; return 0 },
	}
	if u, err := res.Resolve("search"); err != nil || u.String() != "http://10.244.0.8:8080" {
		t.Fatalf("endpoints: %v %v", u, err)
	}
	if offered != 1 {
		t.Fatalf("offered %d ready addresses, want 1", offered)
	}
	began := time.Now()
	_, err := res.Resolve("cut-clips")
	if err == nil || !strings.Contains(err.Error(), "no ready endpoint") {
		t.Fatalf("no endpoints: %v", err)
	}
	if waited := time.Since(began); waited < 300*time.Millisecond {
		t.Fatalf("gave up after %s, before the wait", waited)
	}
	res.Mode = "round-robin"
	if _, err := res.Resolve("search"); err == nil {
		t.Fatal("an unknown mode resolved")
	}
}
