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
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

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
			errs = append(errs, fmt.Errorf("policy path %q %w", p, ErrNoMatch))
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

// ReadPaths is ReadFiles where a path may also be a folder, which stands for
// its .cedar files.
func ReadPaths(paths []string) ([]File, error) {
	globs := make([]string, len(paths))
	for i, p := range paths {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			p = filepath.Join(p, "*.cedar")
		}
		globs[i] = p
	}
	return ReadFiles(globs)
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
	index     *index
	validator *validate.Validator
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
			errs = append(errs, fmt.Errorf("%s: %w%s", f.Name, err, syntaxContext(f.Src, err.Error())))
			continue
		}
		for _, p := range list {
			id := policyName(f.Name, p)
			where := fmt.Sprintf("%s:%d", f.Name, p.Position().Line)
			if prev, dup := seen[id]; dup {
				errs = append(errs, fmt.Errorf("%s: policy id %q %w at %s", where, id, ErrDuplicateID, prev))
				continue
			}
			seen[id] = where
			if err := v.Policy(id, (*cedarast.Policy)(p.AST())); err != nil {
				errs = append(errs, fmt.Errorf("%s: policy %q %w: %w", where, id, ErrSchema, err))
				continue
			}
			if err := checkApproval(p); err != nil {
				errs = append(errs, fmt.Errorf("%s: policy %q: %w", where, id, err))
				continue
			}
			set.Add(cedar.PolicyID(id), p)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Set{policies: set, index: newIndex(set), validator: v}, nil
}

// Len is the number of policies in the set.
func (s *Set) Len() int { return len(s.index.ids) }

// IDs lists the policy ids in the set, sorted.
func (s *Set) IDs() []string {
	var out []string
	for _, id := range s.index.ids {
		out = append(out, string(id))
	}
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

// ApprovalAnnotation marks a permit whose hops are held for a human's
// approval: @approval("required"). ApproversAnnotation names the operator
// groups that may approve them, comma-separated (@approvers("finance"));
// without it any operator may.
const (
	ApprovalAnnotation  = "approval"
	ApproversAnnotation = "approvers"
)

// Approval is what the permits of an allow require before the hop goes
// through.
type Approval struct {
	// Required is set when a deciding permit is annotated
	// @approval("required").
	Required bool
	// PolicyIDs are those permits; Approvers the groups they name (any
	// operator when empty, or when one of them names none).
	PolicyIDs []string
	Approvers []string
}

// ApprovalFor returns what the permits of an allow d require. A hop needs
// approval when any permit that allowed it requires one; its approvers
// are all the groups those permits name, unless one names none.
func (s *Set) ApprovalFor(d Decision) Approval {
	var a Approval
	if !d.Allow {
		return a
	}
	anyone := false
	for _, id := range d.PolicyIDs {
		if s.Annotation(id, ApprovalAnnotation) != "required" {
			continue
		}
		a.Required = true
		a.PolicyIDs = append(a.PolicyIDs, id)
		groups := approvers(s.Annotation(id, ApproversAnnotation))
		anyone = anyone || len(groups) == 0
		for _, g := range groups {
			if !slices.Contains(a.Approvers, g) {
				a.Approvers = append(a.Approvers, g)
			}
		}
	}
	if anyone {
		a.Approvers = nil
	}
	slices.Sort(a.Approvers)
	return a
}

func approvers(v string) []string {
	var out []string
	for g := range strings.SplitSeq(v, ",") {
		if g = strings.TrimSpace(g); g != "" {
			out = append(out, g)
		}
	}
	return out
}

// checkApproval checks the approval annotations of a policy: @approval
// only as "required" and only on a permit, @approvers only with it and
// naming valid group ids.
func checkApproval(p *cedar.Policy) error {
	ann := p.Annotations()
	v, has := ann[ApprovalAnnotation]
	groups, hasGroups := ann[ApproversAnnotation]
	switch {
	case has && v != "required":
		return fmt.Errorf("@%s(%q): the only value is \"required\"", ApprovalAnnotation, v)
	case has && p.Effect() != cedar.Permit:
		return fmt.Errorf("@%s on a forbid: only a permit can require approval", ApprovalAnnotation)
	case hasGroups && !has:
		return fmt.Errorf("@%s without @%s(\"required\")", ApproversAnnotation, ApprovalAnnotation)
	}
	for _, g := range approvers(string(groups)) {
		if err := schemas.CheckPrincipalID(g); err != nil {
			return fmt.Errorf("@%s: group %q: %w", ApproversAnnotation, g, err)
		}
	}
	return nil
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

// cedarPos finds the line:column a Cedar parse error points at.
var cedarPos = regexp.MustCompile(`:(\d+):(\d+)\b`)

// syntaxContext shows the source line a parse error points at, with a
// caret under its column; "" when the error names no position.
func syntaxContext(src []byte, msg string) string {
	m := cedarPos.FindStringSubmatch(msg)
	if m == nil {
		return ""
	}
	line, _ := strconv.Atoi(m[1])
	col, _ := strconv.Atoi(m[2])
	lines := strings.Split(string(src), "\n")
	if line < 1 || line > len(lines) {
		return ""
	}
	text := strings.TrimRight(lines[line-1], "\r")
	pad := make([]byte, 0, col)
	for i := 0; i < col-1 && i < len(text); i++ {
		if text[i] == '\t' {
			pad = append(pad, '\t')
		} else {
			pad = append(pad, ' ')
		}
	}
	return fmt.Sprintf("\n    %d | %s\n    %s | %s^", line, text, strings.Repeat(" ", len(strconv.Itoa(line))), pad)
}
