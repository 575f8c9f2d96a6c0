package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/enforcer/gateway"
)

// TestCompose checks the docker compose file against the files it names
// and the configs it runs: every mount source exists, every named volume
// and dependency is declared, the NATS nodes are the ones the cluster
// config routes to, and the gateway config reaches them, ClickHouse and its
// admin port where compose publishes them.
func TestCompose(t *testing.T) {
	var c struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Ports       []string          `yaml:"ports"`
			Volumes     []string          `yaml:"volumes"`
			DependsOn   any               `yaml:"depends_on"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	readYAML(t, "compose/docker-compose.yaml", &c)
	var nats, gateways []string
	for name, s := range c.Services {
		for _, dep := range dependencies(s.DependsOn) {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s depends on %s, which is no service", name, dep)
			}
		}
		for _, v := range s.Volumes {
			src, dst, _ := strings.Cut(v, ":")
			dst, _, _ = strings.Cut(dst, ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join("compose", src)); err != nil {
					if !strings.HasSuffix(src, "/keys") { // made by the operator (tollgate agent add)
						t.Errorf("%s mounts %s: %v", name, src, err)
					}
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s mounts volume %s, which is not declared", name, src)
			}
			if !strings.HasPrefix(dst, "/") {
				t.Errorf("%s mounts %s at a relative path %q", name, src, dst)
			}
		}
		switch {
		case strings.HasPrefix(s.Image, "nats:"):
			nats = append(nats, name)
			if s.Environment["SERVER_NAME"] != name {
				t.Errorf("%s has SERVER_NAME %q", name, s.Environment["SERVER_NAME"])
			}
			if !mounted(s.Volumes, "../nats/cluster.conf", argAfter(s.Command, "-c")) {
				t.Errorf("%s runs -c %s, which is not where cluster.conf is mounted", name, argAfter(s.Command, "-c"))
			}
			if !mountedDir(s.Volumes, "accounts", "/etc/nats/accounts") {
				t.Errorf("%s: the accounts volume is not where cluster.conf includes it from", name)
			}
		case slices.Contains(s.Command, "serve"):
			gateways = append(gateways, name)
		}
	}
	slices.Sort(nats)

	// The cluster config's routes name exactly the NATS services, at its
	// own cluster port, and include the accounts file where it is mounted.
	conf := readFile(t, "nats/cluster.conf")
	routes := regexp.MustCompile(`nats-route://([\w-]+):(\d+)`).FindAllStringSubmatch(conf, -1)
	clusterPort := regexp.MustCompile(`(?s)cluster \{.*?listen: [\d.]+:(\d+)`).FindStringSubmatch(conf)
	var routed []string
	for _, r := range routes {
		routed = append(routed, r[1])
		if clusterPort == nil || r[2] != clusterPort[1] {
			t.Errorf("route %s:%s, cluster listens on %v", r[1], r[2], clusterPort)
		}
	}
	slices.Sort(routed)
	if len(nats) != 3 || !slices.Equal(routed, nats) {
		t.Errorf("NATS services %v, cluster routes %v: want the same three", nats, routed)
	}
	if !strings.Contains(conf, "include accounts/accounts.conf") {
		t.Error("cluster.conf does not include accounts/accounts.conf")
	}
	clientPort := regexp.MustCompile(`(?m)^listen: [\d.]+:(\d+)`).FindStringSubmatch(conf)

	// The gateway config: loads strictly, reaches the NATS services on the
	// client port, ClickHouse on its native port, and is R3 on 3 nodes.
	cfg := loadGateway(t, readFile(t, "compose/tollgate.yaml"))
	checkGateway(t, cfg, nats, clientPort[1], "clickhouse", "9000")
	if _, ok := c.Services["clickhouse"]; !ok {
		t.Error("no clickhouse service")
	}
	_, adminPort, _ := net.SplitHostPort(cfg.Admin.Listen)
	seen := map[string]bool{}
	for _, name := range gateways {
		s := c.Services[name]
		inst, err := strconv.Atoi(argAfter(s.Command, "--instance"))
		if err != nil || inst < 0 || inst >= cfg.Enforcer.Instances || seen[strconv.Itoa(inst)] {
			t.Errorf("%s: --instance %q of %d instances (each once)", name, argAfter(s.Command, "--instance"), cfg.Enforcer.Instances)
		}
		seen[strconv.Itoa(inst)] = true
		if !mounted(s.Volumes, "./tollgate.yaml", argAfter(s.Command, "-c")) {
			t.Errorf("%s runs -c %s, which is not where tollgate.yaml is mounted", name, argAfter(s.Command, "-c"))
		}
		if !slices.ContainsFunc(s.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+adminPort) }) {
			t.Errorf("%s publishes %v, not the admin port %s", name, s.Ports, adminPort)
		}
		if !mountedDir(s.Volumes, "accounts", "/etc/tollgate/"+filepath.Dir(cfg.NATS.AccountsFile)) {
			t.Errorf("%s: nats.accounts_file %s is not on the accounts volume", name, cfg.NATS.AccountsFile)
		}
	}
	if len(gateways) != cfg.Enforcer.Instances {
		t.Errorf("%d gateway services, enforcer.instances %d", len(gateways), cfg.Enforcer.Instances)
	}
}

// TestKubernetes checks the manifests' cross-references: Services select
// pods and target ports they have, volumes and mounts match, probes use a
// named port, the NATS config routes to the StatefulSet's pods, and the
// gateway config reaches NATS, ClickHouse and its admin port as declared.
func TestKubernetes(t *testing.T) {
	objs := map[string]obj{}
	for _, f := range []string{"k8s/nats.yaml", "k8s/clickhouse.yaml", "k8s/tollgate.yaml"} {
		dec := yaml.NewDecoder(bytes.NewReader([]byte(readFile(t, f))))
		for {
			var o obj
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			key := o.Kind + "/" + o.Metadata.Name
			if _, dup := objs[key]; dup {
				t.Errorf("%s declared twice", key)
			}
			objs[key] = o
		}
	}
	need := func(key string) obj {
		t.Helper()
		o, ok := objs[key]
		if !ok {
			t.Fatalf("no %s in deploy/k8s", key)
		}
		return o
	}
	for key, o := range objs {
		if o.Kind != "StatefulSet" && o.Kind != "Deployment" {
			continue
		}
		pod := o.Spec.Template
		if !labelsMatch(o.Spec.Selector, pod.Metadata.Labels) {
			t.Errorf("%s: selector %v does not match its pods %v", key, o.Spec.Selector, pod.Metadata.Labels)
		}
		vols := map[string]bool{}
		for _, v := range pod.Spec.Volumes {
			vols[v.Name] = true
			if v.ConfigMap != nil {
				need("ConfigMap/" + v.ConfigMap.Name)
			}
			if v.Secret != nil {
				need("Secret/" + v.Secret.SecretName)
			}
		}
		for _, c := range o.Spec.VolumeClaimTemplates {
			vols[c.Metadata.Name] = true
		}
		for _, c := range pod.Spec.Containers {
			ports := map[string]bool{}
			for _, p := range c.Ports {
				ports[p.Name] = true
			}
			for _, m := range c.VolumeMounts {
				if !vols[m.Name] {
					t.Errorf("%s: mount %s has no volume", key, m.Name)
				}
			}
			for _, p := range []*probe{c.ReadinessProbe, c.LivenessProbe} {
				if p != nil && !ports[p.HTTPGet.Port] {
					t.Errorf("%s: probe on port %q, which the container does not name", key, p.HTTPGet.Port)
				}
			}
		}
		if o.Kind == "StatefulSet" {
			svc := need("Service/" + o.Spec.ServiceName)
			if !labelsMatch(svc.Spec.Selector, pod.Metadata.Labels) {
				t.Errorf("%s: its service %s selects %v", key, svc.Metadata.Name, svc.Spec.Selector)
			}
		}
	}
	for key, o := range objs {
		if o.Kind != "Service" {
			continue
		}
		var pods []container
		for _, w := range objs {
			if (w.Kind == "StatefulSet" || w.Kind == "Deployment") && labelsMatch(o.Spec.Selector, w.Spec.Template.Metadata.Labels) {
				pods = append(pods, w.Spec.Template.Spec.Containers...)
			}
		}
		if len(pods) == 0 {
			t.Errorf("%s selects no pods", key)
		}
		for _, p := range o.Spec.Ports {
			if !slices.ContainsFunc(pods, func(c container) bool {
				return slices.ContainsFunc(c.Ports, func(cp port) bool { return cp.Name == p.TargetPort && cp.ContainerPort == p.Port })
			}) {
				t.Errorf("%s: port %d targets %q, which no selected container has on that number", key, p.Port, p.TargetPort)
			}
		}
	}

	// NATS: 3 replicas, routes to each pod by its stable name.
	sts := need("StatefulSet/nats")
	conf := need("ConfigMap/nats-config").Data["nats.conf"]
	var want []string
	for i := range sts.Spec.Replicas {
		want = append(want, fmt.Sprintf("nats-%d.%s", i, sts.Spec.ServiceName))
	}
	var routed []string
	for _, r := range regexp.MustCompile(`nats-route://([\w.-]+):(\d+)`).FindAllStringSubmatch(conf, -1) {
		routed = append(routed, r[1])
		if r[2] != strconv.Itoa(servicePort(t, need("Service/nats"), "cluster")) {
			t.Errorf("route %s on port %s, not the cluster port", r[1], r[2])
		}
	}
	if sts.Spec.Replicas != 3 || !slices.Equal(routed, want) {
		t.Errorf("nats: %d replicas, routes %v, want %v", sts.Spec.Replicas, routed, want)
	}
	if !strings.Contains(conf, "include accounts/accounts.conf") || need("ConfigMap/nats-accounts").Data["accounts.conf"] == "" {
		t.Error("nats.conf does not include the nats-accounts ConfigMap's accounts.conf")
	}

	// The gateway: its config reaches the NATS pods and ClickHouse, and
	// its admin listener is the port its probes and Service use.
	cfg := loadGateway(t, need("ConfigMap/tollgate-config").Data["tollgate.yaml"])
	checkGateway(t, cfg, want, strconv.Itoa(servicePort(t, need("Service/nats"), "client")),
		"clickhouse", strconv.Itoa(servicePort(t, need("Service/clickhouse"), "native")))
	dep := need("Deployment/tollgate")
	_, adminPort, _ := net.SplitHostPort(cfg.Admin.Listen)
	c := dep.Spec.Template.Spec.Containers[0]
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Error("the gateway is not probed on /readyz and /healthz")
	}
	if !slices.ContainsFunc(c.Ports, func(p port) bool { return p.Name == "admin" && strconv.Itoa(p.ContainerPort) == adminPort }) {
		t.Errorf("the gateway's admin port is %s in its config, not its container's admin port %v", adminPort, c.Ports)
	}
	if argAfter(c.Args, "-c") != "/etc/tollgate/tollgate.yaml" || !slices.ContainsFunc(c.VolumeMounts, func(m mount) bool {
		return m.Name == "config" && m.MountPath == "/etc/tollgate/tollgate.yaml"
	}) {
		t.Error("the gateway's -c is not its mounted config")
	}
	if cfg.Enforcer.Instances > 1 {
		t.Error("a Deployment has no ordinals: enforcer.instances must be 1 there")
	}
}

type obj struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Replicas    int    `yaml:"replicas"`
		ServiceName string `yaml:"serviceName"`
		// Selector is a Service's labels, or a workload's matchLabels.
		Selector             map[string]any `yaml:"selector"`
		Ports                []svcPort      `yaml:"ports"`
		Template             podTemplate    `yaml:"template"`
		VolumeClaimTemplates []claim        `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type claim struct {
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
}

type svcPort struct {
	Name       string `yaml:"name"`
	Port       int    `yaml:"port"`
	TargetPort string `yaml:"targetPort"`
}

type podTemplate struct {
	Metadata struct {
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		Containers []container `yaml:"containers"`
		Volumes    []struct {
			Name      string `yaml:"name"`
			ConfigMap *struct {
				Name string `yaml:"name"`
			} `yaml:"configMap"`
			Secret *struct {
				SecretName string `yaml:"secretName"`
			} `yaml:"secret"`
		} `yaml:"volumes"`
	} `yaml:"spec"`
}

type container struct {
	Name           string   `yaml:"name"`
	Args           []string `yaml:"args"`
	Ports          []port   `yaml:"ports"`
	VolumeMounts   []mount  `yaml:"volumeMounts"`
	ReadinessProbe *probe   `yaml:"readinessProbe"`
	LivenessProbe  *probe   `yaml:"livenessProbe"`
}

type port struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
}

type mount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

func labelsMatch(selector map[string]any, labels map[string]string) bool {
	if m, ok := selector["matchLabels"].(map[string]any); ok {
		selector = m
	}
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if s, ok := v.(string); !ok || labels[k] != s {
			return false
		}
	}
	return true
}

func servicePort(t *testing.T, svc obj, name string) int {
	t.Helper()
	for _, p := range svc.Spec.Ports {
		if p.Name == name {
			return p.Port
		}
	}
	t.Fatalf("service %s has no port %s", svc.Metadata.Name, name)
	return 0
}

// checkGateway checks that a gateway config reaches NATS at hosts on
// natsPort (every host once), is R3 and partitioned, and projects into
// ClickHouse at chHost:chPort.
func checkGateway(t *testing.T, cfg *gateway.Config, hosts []string, natsPort, chHost, chPort string) {
	t.Helper()
	var got []string
	for _, u := range strings.Split(cfg.NATS.URL, ",") {
		pu, err := url.Parse(u)
		if err != nil {
			t.Errorf("nats.url %s: %v", u, err)
			continue
		}
		got = append(got, pu.Hostname())
		if pu.Port() != natsPort {
			t.Errorf("nats.url %s: port %s, the servers listen on %s", u, pu.Port(), natsPort)
		}
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(hosts))
	if !slices.Equal(got, want) {
		t.Errorf("nats.url hosts %v, want %v", got, want)
	}
	if cfg.NATS.Replicas != 3 || cfg.NATS.Partitions < 2 {
		t.Errorf("nats.replicas %d, nats.partitions %d: want R3 and partitions", cfg.NATS.Replicas, cfg.NATS.Partitions)
	}
	u, err := url.Parse(cfg.ClickHouse.DSN)
	if err != nil || u.Hostname() != chHost || u.Port() != chPort {
		t.Errorf("clickhouse.dsn %s, want %s:%s (%v)", cfg.ClickHouse.DSN, chHost, chPort, err)
	}
}

// loadGateway loads a gateway config strictly, as serve does.
func loadGateway(t *testing.T, text string) *gateway.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		t.Fatalf("gateway config: %v", err)
	}
	return cfg
}

func dependencies(v any) []string {
	switch d := v.(type) {
	case []any:
		var out []string
		for _, x := range d {
			out = append(out, fmt.Sprint(x))
		}
		return out
	case map[string]any:
		var out []string
		for k := range d {
			out = append(out, k)
		}
		return out
	}
	return nil
}

func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// mounted reports whether src is mounted at dst.
func mounted(volumes []string, src, dst string) bool {
	return slices.ContainsFunc(volumes, func(v string) bool {
		s, d, _ := strings.Cut(v, ":")
		d, _, _ = strings.Cut(d, ":")
		return s == src && d == dst
	})
}

// mountedDir reports whether the named volume is mounted at dir.
func mountedDir(volumes []string, name, dir string) bool {
	return mounted(volumes, name, filepath.Clean(dir))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader([]byte(readFile(t, path))))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
