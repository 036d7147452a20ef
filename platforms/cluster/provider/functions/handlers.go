package functions

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/openfaas/faas-provider/types"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// NamespaceLabel marks the namespaces the provider may deploy to (faas-netes' label too).
const NamespaceLabel = "openfaas"

// Provider answers the faas-provider REST API from the cluster behind Client.
type Provider struct {
	Client  kubernetes.Interface
	Config  Config
	Name    string // provider name in /system/info
	Version string
	SHA     string
	Log     *slog.Logger
	// Activity, when set, hears of deploys and scale-ups (the idler's clock restarts).
	Activity *Activity
}

// Handlers is the faas-provider handler set (logs and secrets are not implemented).
func (p *Provider) Handlers(proxy http.HandlerFunc) *types.FaaSHandlers {
	return &types.FaaSHandlers{
		FunctionLister: p.List,
		DeployFunction: p.Deploy,
		UpdateFunction: p.Update,
		DeleteFunction: p.Delete,
		FunctionStatus: p.Describe,
		ScaleFunction:  p.Scale,
		ListNamespaces: p.Namespaces,
		Info:           p.Info,
		Health:         func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) },
		FunctionProxy:  proxy,
		Secrets:        notImplemented("secrets (create them with kubectl)"),
		Logs:           notImplemented("logs (read them with kubectl logs)"),
	}
}

func notImplemented(what string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not implemented by this provider: "+what, http.StatusNotImplemented)
	}
}

type httpError struct {
	status int
	err    error
}

func (e *httpError) Error() string { return e.err.Error() }

func fail(status int, format string, args ...any) error {
	return &httpError{status: status, err: fmt.Errorf(format, args...)}
}

func (p *Provider) reply(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	var he *httpError
	switch {
	case asHTTPError(err, &he):
		status = he.status
	case apierrors.IsNotFound(err):
		status = http.StatusNotFound
	case apierrors.IsAlreadyExists(err), apierrors.IsConflict(err):
		status = http.StatusConflict
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		status = http.StatusBadRequest
	}
	p.Log.Warn("request_failed", "method", r.Method, "path", r.URL.Path, "status", status,
		"error", err.Error())
	http.Error(w, err.Error(), status)
}

func asHTTPError(err error, target **httpError) bool {
	he, ok := err.(*httpError)
	if ok {
		*target = he
	}
	return ok
}

func (p *Provider) namespace(requested string) (string, error) {
	if requested == "" || requested == p.Config.Namespace {
		return p.Config.Namespace, nil
	}
	return "", fail(http.StatusBadRequest, "namespace %q is not a function namespace (only %q)",
		requested, p.Config.Namespace)
}

func (p *Provider) readDeployment(r *http.Request) (types.FunctionDeployment, error) {
	var req types.FunctionDeployment
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return req, fail(http.StatusBadRequest, "reading the request: %w", err)
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return req, fail(http.StatusBadRequest, "the request is not a FunctionDeployment: %w", err)
	}
	if req.Namespace, err = p.namespace(req.Namespace); err != nil {
		return req, err
	}
	if err := ValidateName(req.Service); err != nil {
		return req, fail(http.StatusBadRequest, "%w", err)
	}
	return req, nil
}

func (p *Provider) secretsOf(ctx context.Context, req types.FunctionDeployment) (
	map[string]*corev1.Secret, error,
) {
	out := map[string]*corev1.Secret{}
	for _, name := range req.Secrets {
		s, err := p.Client.CoreV1().Secrets(req.Namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, fail(http.StatusBadRequest, "secret %q is not in namespace %q",
				name, req.Namespace)
		}
		if err != nil {
			return nil, err
		}
		out[name] = s
	}
	return out, nil
}

// Deploy creates the function's Deployment and Service (POST /system/functions).
func (p *Provider) Deploy(w http.ResponseWriter, r *http.Request) {
	if err := p.deploy(r); err != nil {
		p.reply(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (p *Provider) deploy(r *http.Request) error {
	ctx := r.Context()
	req, err := p.readDeployment(r)
	if err != nil {
		return err
	}
	secrets, err := p.secretsOf(ctx, req)
	if err != nil {
		return err
	}
	deployment, err := MakeDeployment(req, secrets, p.Config)
	if err != nil {
		return fail(http.StatusBadRequest, "%w", err)
	}
	if _, err := p.Client.AppsV1().Deployments(req.Namespace).Create(
		ctx, deployment, metav1.CreateOptions{}); err != nil {
		return err
	}
	services := p.Client.CoreV1().Services(req.Namespace)
	if _, err := services.Create(ctx, MakeService(req, p.Config), metav1.CreateOptions{}); err != nil &&
		!apierrors.IsAlreadyExists(err) {
		return err
	}
	p.Activity.Touch(req.Service)
	p.Log.Info("function_deployed", "function", req.Service, "namespace", req.Namespace,
		"image", req.Image, "replicas", *deployment.Spec.Replicas)
	return nil
}

// Update replaces the function's pod template and Service (PUT /system/functions); the replica
// count stays what scaling made it unless the request's minimum is higher.
func (p *Provider) Update(w http.ResponseWriter, r *http.Request) {
	if err := p.update(r); err != nil {
		p.reply(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (p *Provider) update(r *http.Request) error {
	ctx := r.Context()
	req, err := p.readDeployment(r)
	if err != nil {
		return err
	}
	deployments := p.Client.AppsV1().Deployments(req.Namespace)
	current, err := deployments.Get(ctx, req.Service, metav1.GetOptions{})
	if err != nil {
		return err
	}
	secrets, err := p.secretsOf(ctx, req)
	if err != nil {
		return err
	}
	wanted, err := MakeDeployment(req, secrets, p.Config)
	if err != nil {
		return fail(http.StatusBadRequest, "%w", err)
	}
	current.Annotations = wanted.Annotations
	current.Spec.Template = wanted.Spec.Template
	if current.Spec.Replicas == nil || *current.Spec.Replicas < *wanted.Spec.Replicas {
		current.Spec.Replicas = wanted.Spec.Replicas
	}
	if _, err := deployments.Update(ctx, current, metav1.UpdateOptions{}); err != nil {
		return err
	}
	services := p.Client.CoreV1().Services(req.Namespace)
	service, err := services.Get(ctx, req.Service, metav1.GetOptions{})
	if err != nil {
		return err
	}
	fresh := MakeService(req, p.Config)
	service.Annotations, service.Spec.Selector, service.Spec.Ports =
		fresh.Annotations, fresh.Spec.Selector, fresh.Spec.Ports
	if _, err := services.Update(ctx, service, metav1.UpdateOptions{}); err != nil {
		return err
	}
	p.Activity.Touch(req.Service)
	p.Log.Info("function_updated", "function", req.Service, "namespace", req.Namespace,
		"image", req.Image)
	return nil
}

// Delete removes the function's Deployment and Service (DELETE /system/functions).
func (p *Provider) Delete(w http.ResponseWriter, r *http.Request) {
	if err := p.delete(r); err != nil {
		p.reply(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (p *Provider) delete(r *http.Request) error {
	ctx := r.Context()
	var req types.DeleteFunctionRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		return fail(http.StatusBadRequest, "the request is not a DeleteFunctionRequest: %w", err)
	}
	namespace, err := p.namespace(req.Namespace)
	if err != nil {
		return err
	}
	if req.FunctionName == "" {
		return fail(http.StatusBadRequest, "functionName is empty")
	}
	if _, err := p.function(ctx, namespace, req.FunctionName); err != nil {
		return err
	}
	// Background: the Deployment goes at once (a redeploy of the name can follow), the garbage
	// collector removes its ReplicaSets and pods after.
	background := metav1.DeletePropagationBackground
	options := metav1.DeleteOptions{PropagationPolicy: &background}
	if err := p.Client.AppsV1().Deployments(namespace).Delete(
		ctx, req.FunctionName, options); err != nil {
		return err
	}
	if err := p.Client.CoreV1().Services(namespace).Delete(
		ctx, req.FunctionName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	p.Log.Info("function_deleted", "function", req.FunctionName, "namespace", namespace)
	return nil
}

// function is the Deployment of a function, a 404 for a Deployment that is not one.
func (p *Provider) function(ctx context.Context, namespace, name string) (*appsv1.Deployment, error) {
	d, err := p.Client.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fail(http.StatusNotFound, "function %q not found in %q", name, namespace)
	}
	if err != nil {
		return nil, err
	}
	if d.Labels[FunctionLabel] != name {
		return nil, fail(http.StatusNotFound, "deployment %q is not a function", name)
	}
	return d, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(v)
}

// List answers every function of the namespace (GET /system/functions?namespace=).
func (p *Provider) List(w http.ResponseWriter, r *http.Request) {
	namespace, err := p.namespace(r.URL.Query().Get("namespace"))
	if err != nil {
		p.reply(w, r, err)
		return
	}
	list, err := p.Client.AppsV1().Deployments(namespace).List(r.Context(),
		metav1.ListOptions{LabelSelector: FunctionLabel})
	if err != nil {
		p.reply(w, r, err)
		return
	}
	out := []types.FunctionStatus{}
	for i := range list.Items {
		out = append(out, Status(&list.Items[i]))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, out)
}

// Describe answers one function (GET /system/function/{name}?namespace=).
func (p *Provider) Describe(w http.ResponseWriter, r *http.Request) {
	namespace, err := p.namespace(r.URL.Query().Get("namespace"))
	if err != nil {
		p.reply(w, r, err)
		return
	}
	d, err := p.function(r.Context(), namespace, mux.Vars(r)["name"])
	if err != nil {
		p.reply(w, r, err)
		return
	}
	writeJSON(w, Status(d))
}

// Scale sets the replica count, 0 included (POST /system/scale-function/{name}).
func (p *Provider) Scale(w http.ResponseWriter, r *http.Request) {
	if err := p.scale(r); err != nil {
		p.reply(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (p *Provider) scale(r *http.Request) error {
	ctx := r.Context()
	var req types.ScaleServiceRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		return fail(http.StatusBadRequest, "the request is not a ScaleServiceRequest: %w", err)
	}
	name := mux.Vars(r)["name"]
	if name == "" {
		name = req.ServiceName
	}
	if req.ServiceName != "" && req.ServiceName != name {
		return fail(http.StatusBadRequest, "serviceName %q is not %q", req.ServiceName, name)
	}
	namespace, err := p.namespace(req.Namespace)
	if err != nil {
		return err
	}
	if req.Replicas > 1000 {
		return fail(http.StatusBadRequest, "replicas %d is more than 1000", req.Replicas)
	}
	// Read-modify-write of spec.replicas, retried on conflict: what the scale subresource does,
	// and client-go's fake clientset (the tests) can follow it.
	deployments := p.Client.AppsV1().Deployments(namespace)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := p.function(ctx, namespace, name)
		if err != nil {
			return err
		}
		replicas := int32(req.Replicas)
		d.Spec.Replicas = &replicas
		_, err = deployments.Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return err
	}
	if req.Replicas > 0 {
		// The gateway's scale-from-zero: the replica it waits for must not idle out first.
		p.Activity.Touch(name)
	}
	p.Log.Info("function_scaled", "function", name, "namespace", namespace,
		"replicas", req.Replicas)
	return nil
}

// Namespaces lists the function namespace (GET /system/namespaces): CE serves one.
func (p *Provider) Namespaces(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, []string{p.Config.Namespace})
}

// Info names the provider (GET /system/info).
func (p *Provider) Info(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, types.ProviderInfo{
		Name:          p.Name,
		Orchestration: "kubernetes",
		Version:       &types.VersionInfo{Release: p.Version, SHA: p.SHA},
	})
}

// Resolver finds where a function listens. By default a ready pod's IP from the function's
// EndpointSlices, as faas-netes does: right after a scale from zero the gateway sees the pod
// available before kube-proxy has programmed the Service's ClusterIP for it, and a proxy to the
// ClusterIP then fails ("Can't reach service"). Mode "clusterip" uses the Service's ClusterIP
// (kube-proxy balances), "dns" its DNS name.
type Resolver struct {
	Client        kubernetes.Interface
	Config        Config
	Mode          string // "endpoints" (default), "clusterip" or "dns"
	ClusterDomain string
	// EndpointWait bounds the wait for a ready endpoint (the endpoint controller lags readiness
	// by a moment); zero: defaultEndpointWait.
	EndpointWait time.Duration
	// Pick chooses among ready addresses; nil: uniformly at random.
	Pick func(n int) int
}

const defaultEndpointWait = 10 * time.Second

// Resolve maps "name" or "name.namespace" to http://<address>:<runtime port>.
func (res Resolver) Resolve(function string) (url.URL, error) {
	name, namespace, found := strings.Cut(function, ".")
	if !found {
		namespace = res.Config.Namespace
	}
	if namespace != res.Config.Namespace {
		return url.URL{}, fmt.Errorf("namespace %q is not a function namespace", namespace)
	}
	var host string
	var err error
	switch res.Mode {
	case "dns":
		host = fmt.Sprintf("%s.%s.svc.%s", name, namespace, res.ClusterDomain)
	case "clusterip":
		host, err = res.clusterIP(name, namespace)
	case "", "endpoints":
		host, err = res.readyEndpoint(name, namespace)
	default:
		err = fmt.Errorf("unknown resolver mode %q (endpoints, clusterip or dns)", res.Mode)
	}
	if err != nil {
		return url.URL{}, fmt.Errorf("function %q: %w", function, err)
	}
	return url.URL{Scheme: "http", Host: net.JoinHostPort(host, fmt.Sprint(res.Config.RuntimePort))}, nil
}

func (res Resolver) clusterIP(name, namespace string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), defaultLookupTimeout)
	defer cancel()
	svc, err := res.Client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return "", fmt.Errorf("its Service has no ClusterIP")
	}
	return svc.Spec.ClusterIP, nil
}

func (res Resolver) readyEndpoint(name, namespace string) (string, error) {
	wait := res.EndpointWait
	if wait <= 0 {
		wait = defaultEndpointWait
	}
	deadline := time.Now().Add(wait)
	for {
		ready, err := res.readyAddresses(name, namespace)
		if err != nil {
			return "", err
		}
		if len(ready) > 0 {
			pick := res.Pick
			if pick == nil {
				pick = rand.IntN
			}
			return ready[pick(len(ready))], nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no ready endpoint after %s", wait)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (res Resolver) readyAddresses(name, namespace string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), defaultLookupTimeout)
	defer cancel()
	slices, err := res.Client.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + name,
	})
	if err != nil {
		return nil, err
	}
	var ready []string
	for _, slice := range slices.Items {
		for _, ep := range slice.Endpoints {
			// Ready nil means "unknown", which consumers are told to read as ready.
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			if ep.Conditions.Terminating != nil && *ep.Conditions.Terminating {
				continue
			}
			if len(ep.Addresses) > 0 {
				ready = append(ready, ep.Addresses[0])
			}
		}
	}
	sort.Strings(ready)
	return ready, nil
}
