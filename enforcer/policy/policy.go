// Package policy is Tollgate's Cedar authorization: it loads .cedar files,
// validates every policy against the Cedar schema in schemas/, builds the
// entities of every registered identity, and decides hops with default
// deny. A policy that fails to evaluate makes the decision a deny, never a
// silent skip (Cedar's own semantics would drop the failing policy, which
// turns a broken forbid into an allow).
package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	cedarast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"

	"github.com/tollgate/tollgate/schemas"
)

// File is one policy document.
type File struct {
	Name string
	Src  []byte
}

// ReadFiles reads policy files. Each path may be a file or a glob.
func ReadFiles(paths []string) ([]File, error) {
	var files []File
	var errs []error
	for _, p := range paths {
		matches, err := filepath.Glob(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy path %q: %w", p, err))
			continue
		}
		if len(matches) == 0 {
			errs = append(errs, fmt.Errorf("policy path %q matches no file", p))
		}
		sort.Strings(matches)
		for _, m := range matches {
			src, err := os.ReadFile(m)
			if err != nil {
				errs = append(errs, fmt.Errorf("read policy: %w", err))
				continue
			}
			files = append(files, File{Name: m, Src: src})
		}
	}
	return files, errors.Join(errs...)
}

// ReadFS reads every .cedar file of a file system (such as deploy.Policies()),
// in path order. Names are prefix + the path.
func ReadFS(fsys fs.FS, prefix string) ([]File, error) {
	var files []File
	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".cedar" {
			return err
		}
		src, err := fs.ReadFile(fsys, path)
		if err != nil {
			return fmt.Errorf("read policy: %w", err)
		}
		files = append(files, File{Name: prefix + path, Src: src})
		return nil
	})
	return files, err
}

// Set is a validated set of policies, safe for concurrent use. Each policy
// is known by its @id annotation, or by file:line when it has none.
type Set struct {
	policies  *cedar.PolicySet
	validator *validate.Validator
	count     int
}

// Compile parses and validates policy files against the Cedar schema. It
// reports every problem of every file at once.
func Compile(files []File) (*Set, error) {
	v, err := newValidator()
	if err != nil {
		return nil, err
	}
	set := cedar.NewPolicySet()
	var errs []error
	seen := map[string]string{}
	for _, f := range files {
		list, err := cedar.NewPolicyListFromBytes(f.Name, f.Src)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.Name, err))
			continue
		}
		for _, p := range list {
			id := policyName(f.Name, p)
			where := fmt.Sprintf("%s:%d", f.Name, p.Position().Line)
			if prev, dup := seen[id]; dup {
				errs = append(errs, fmt.Errorf("%s: policy id %q is also used at %s", where, id, prev))
				continue
			}
			seen[id] = where
			if err := v.Policy(id, (*cedarast.Policy)(p.AST())); err != nil {
				errs = append(errs, fmt.Errorf("%s: policy %q does not match the schema: %w", where, id, err))
				continue
			}
			set.Add(cedar.PolicyID(id), p)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Set{policies: set, validator: v, count: len(seen)}, nil
}

// Len is the number of policies in the set.
func (s *Set) Len() int { return s.count }

// IDs lists the policy ids in the set, sorted.
func (s *Set) IDs() []string {
	var out []string
	for id := range s.policies.All() {
		out = append(out, string(id))
	}
	slices.Sort(out)
	return out
}

// CycleAnnotation marks a permit policy that lets a cycle through: a hop
// whose target already appears in its ancestry is denied (reason loop)
// unless a policy with @cycle("allow") permits it, e.g. for a bounded
// re-entry written with context.edge_calls.
const CycleAnnotation = "cycle"

// AllowsCycle reports whether d is an allow decided by a permit annotated
// @cycle("allow"): the one way a hop that closes a cycle gets through.
func (s *Set) AllowsCycle(d Decision) bool {
	if !d.Allow {
		return false
	}
	for _, id := range d.PolicyIDs {
		if s.Annotation(id, CycleAnnotation) == "allow" {
			return true
		}
	}
	return false
}

// Annotation returns the value of an annotation of a policy, "" if none.
func (s *Set) Annotation(id, key string) string {
	p := s.policies.Get(cedar.PolicyID(id))
	if p == nil {
		return ""
	}
	k, err := types.NewAnnotationKey(key)
	if err != nil {
		return ""
	}
	return string(p.Annotations()[k])
}

func policyName(file string, p *cedar.Policy) string {
	if id, ok := p.Annotations()["id"]; ok && id != "" {
		return string(id)
	}
	return fmt.Sprintf("%s:%d", filepath.Base(file), p.Position().Line)
}

func newValidator() (*validate.Validator, error) {
	var s schema.Schema
	s.SetFilename("tollgate.cedarschema")
	if err := s.UnmarshalCedar(schemas.CedarSchema()); err != nil {
		return nil, fmt.Errorf("cedar schema: %w", err)
	}
	resolved, err := s.Resolve()
	if err != nil {
		return nil, fmt.Errorf("cedar schema: %w", err)
	}
	return validate.New(resolved), nil
}
