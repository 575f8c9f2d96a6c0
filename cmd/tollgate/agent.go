package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/enforcer/gateway"
	"github.com/tollgate/tollgate/schemas"
)

const reloadHint = "the running gateway applies it at its next reload (kill -HUP <pid>, or tollgate reload)"

func newAgentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Register and manage identities: agents, users, tools, models and operators",
		Long: `Register and manage the identities of a gateway config file: add, list, show,
disable, enable, rotate and remove. Every edit checks the whole config first
and writes nothing when the result would not be valid; comments and layout
survive. ` + reloadHint + `: a disabled, rotated or removed identity's
connections are cut off at once.`,
	}
	cmd.AddCommand(newAgentAddCmd(), newAgentListCmd(), newAgentShowCmd(), newAgentDisableCmd(true), newAgentDisableCmd(false),
		newAgentRotateCmd(), newAgentRemoveCmd(), newTokenCmd())
	return cmd
}

// completeIDs completes identity ids from the --config file.
func completeIDs(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	path, _ := cmd.Flags().GetString("config")
	if len(args) > 0 || path == "" {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	entries, err := gateway.ReadEntries(path)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.ID+"\t"+e.Type)
	}
	return ids, cobra.ShellCompDirectiveNoFileComp
}

func newAgentAddCmd() *cobra.Command {
	var keysDir, configPath, typ, team string
	var tags []string
	var asJSON bool
	add := &cobra.Command{
		Use:   "add <id>",
		Short: "Create an identity's key (its NATS credential and signing key) and register it",
		Long: `Create a fresh nkey for the identity, write its seed to <keys>/<id>.nk
(mode 0600; give it to the agent and to nobody else), and print its public key.
With --config, the identity is added to the gateway config file too; ` + reloadHint + `.
Everything is checked before anything is written: a refused add leaves no key
file behind.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := schemas.CheckPrincipalID(id); err != nil {
				return err
			}
			if _, ok := gateway.IdentityTypes[typ]; !ok && typ != gateway.TypeOperator {
				return fmt.Errorf("--type %q is not agent, tool, model, user or operator", typ)
			}
			seedPath := filepath.Join(keysDir, id+broker.SeedExt)
			if _, err := os.Stat(seedPath); err == nil {
				return fmt.Errorf("%s exists already: an identity's key is created once (rotate it with tollgate agent rotate)", seedPath)
			}
			kp, err := broker.NewKey()
			if err != nil {
				return err
			}
			pub, err := kp.PublicKey()
			if err != nil {
				return err
			}
			n := gateway.NewIdentity{ID: id, Type: typ, Team: team, Tags: tags, PublicKey: pub}
			if configPath != "" {
				if err := gateway.CheckAddIdentity(configPath, n); err != nil {
					return err
				}
			}
			if err := broker.WriteSeed(seedPath, kp); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if configPath != "" {
					if err := gateway.AddIdentity(configPath, n); err != nil {
						_ = os.Remove(seedPath)
						return err
					}
				}
				return writeJSON(out, agentResult{ID: id, Action: "added", Config: configPath, PublicKey: pub, KeyFile: seedPath})
			}
			fmt.Fprintf(out, "created %s %s\n  key seed:   %s (keep it secret)\n  public key: %s\n", typ, id, seedPath, pub)
			if configPath == "" {
				snippet, err := yaml.Marshal([]any{n.Entry()})
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "\nadd to the %s of your gateway config:\n%s", n.List(), snippet)
				return nil
			}
			if err := gateway.AddIdentity(configPath, n); err != nil {
				_ = os.Remove(seedPath)
				return err
			}
			fmt.Fprintf(out, "  registered in %s under %s; %s\n", configPath, n.List(), reloadHint)
			return nil
		},
	}
	add.Flags().StringVar(&keysDir, "keys", "keys", "folder for the key seed")
	add.Flags().StringVarP(&configPath, "config", "c", "", "gateway config file to register the identity in")
	add.Flags().StringVar(&typ, "type", "agent", "agent, tool, model, user or operator")
	add.Flags().StringVar(&team, "team", "", "team (a Cedar attribute)")
	add.Flags().StringSliceVar(&tags, "tags", nil, "tags (a Cedar attribute), comma separated")
	add.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return add
}

// readEntries reads the identities of a config file without validating
// it, so that a broken config can still be listed and mended.
func readEntries(path string) ([]gateway.IdentityEntry, error) { return gateway.ReadEntries(path) }

func newAgentListCmd() *cobra.Command {
	var configPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the identities and operators of a gateway config",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			entries, err := readEntries(configPath)
			if err != nil {
				return err
			}
			if asJSON {
				if entries == nil {
					entries = []gateway.IdentityEntry{}
				}
				return writeJSON(cmd.OutOrStdout(), entries)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTYPE\tSTATE\tTEAM\tTAGS\tPUBLIC KEY")
			for _, e := range entries {
				state := "enabled"
				if e.Disabled {
					state = "disabled"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Type, state, orDash(e.Team), orDash(strings.Join(append(e.Tags, e.Groups...), ",")), orDash(e.PublicKey))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "tollgate.yaml", "gateway config file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newAgentShowCmd() *cobra.Command {
	var configPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "show <id>",
		Short:             "Show one identity or operator of a gateway config",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeIDs,
		RunE: func(cmd *cobra.Command, args []string) error {
			entries, err := readEntries(configPath)
			if err != nil {
				return err
			}
			for _, e := range entries {
				if e.ID != args[0] {
					continue
				}
				if asJSON {
					return writeJSON(cmd.OutOrStdout(), e)
				}
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "id:                %s\ntype:              %s (in %s)\n", e.ID, e.Type, e.List)
				fmt.Fprintf(w, "state:             %s\n", map[bool]string{true: "disabled", false: "enabled"}[e.Disabled])
				fmt.Fprintf(w, "public key:        %s\n", orDash(e.PublicKey))
				if e.List != "operators" {
					fmt.Fprintf(w, "team:              %s\ntags:              %s\nrequire signature: %t\nuntrusted:         %t\n",
						orDash(e.Team), orDash(strings.Join(e.Tags, ", ")), e.RequireSignature, e.Untrusted)
				} else {
					fmt.Fprintf(w, "groups:            %s\n", orDash(strings.Join(e.Groups, ", ")))
				}
				return nil
			}
			return fmt.Errorf("%w: %s registers no %q", gateway.ErrNoIdentity, configPath, args[0])
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "tollgate.yaml", "gateway config file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// agentResult is what the editing commands print with --json.
type agentResult struct {
	ID        string `json:"id"`
	Action    string `json:"action"`
	Config    string `json:"config"`
	PublicKey string `json:"public_key,omitempty"`
	KeyFile   string `json:"key_file,omitempty"`
}

func printResult(cmd *cobra.Command, asJSON bool, r agentResult, text string) error {
	if asJSON {
		return writeJSON(cmd.OutOrStdout(), r)
	}
	_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s; %s\n", text, reloadHint)
	return err
}

func newAgentDisableCmd(disable bool) *cobra.Command {
	var configPath string
	var asJSON bool
	use, short, verb := "disable <id>", "Disable an identity: it is cut off at the gateway's next reload", "disabled"
	if !disable {
		use, short, verb = "enable <id>", "Enable a disabled identity again", "enabled"
	}
	cmd := &cobra.Command{
		Use: use, Short: short, Args: cobra.ExactArgs(1), ValidArgsFunction: completeIDs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := gateway.SetDisabled(configPath, args[0], disable); err != nil {
				return err
			}
			return printResult(cmd, asJSON, agentResult{ID: args[0], Action: verb, Config: configPath},
				fmt.Sprintf("%s %s in %s", verb, args[0], configPath))
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "tollgate.yaml", "gateway config file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newAgentRotateCmd() *cobra.Command {
	var configPath, keysDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "rotate <id>",
		Short: "Give an identity a fresh key: the old one stops working at the gateway's next reload",
		Long: `Create a fresh nkey for the identity, keep the old seed as <keys>/<id>.nk.old,
write the new one to <keys>/<id>.nk and register its public key in the
config. ` + reloadHint + `: connections with the old key are closed.`,
		Args: cobra.ExactArgs(1), ValidArgsFunction: completeIDs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			kp, err := broker.NewKey()
			if err != nil {
				return err
			}
			pub, err := kp.PublicKey()
			if err != nil {
				return err
			}
			if err := gateway.CheckPublicKey(configPath, id, pub); err != nil {
				return err
			}
			seedPath := filepath.Join(keysDir, id+broker.SeedExt)
			old := seedPath + ".old"
			hadOld := false
			if _, err := os.Stat(seedPath); err == nil {
				if err := os.Rename(seedPath, old); err != nil {
					return fmt.Errorf("keep the old key: %w", err)
				}
				hadOld = true
			}
			if err := broker.WriteSeed(seedPath, kp); err != nil {
				return err
			}
			if err := gateway.SetPublicKey(configPath, id, pub); err != nil {
				_ = os.Remove(seedPath)
				if hadOld {
					_ = os.Rename(old, seedPath)
				}
				return err
			}
			return printResult(cmd, asJSON, agentResult{ID: id, Action: "rotated", Config: configPath, PublicKey: pub, KeyFile: seedPath},
				fmt.Sprintf("rotated %s: new key seed %s, public key %s", id, seedPath, pub))
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "tollgate.yaml", "gateway config file")
	cmd.Flags().StringVar(&keysDir, "keys", "keys", "folder of the key seeds")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newAgentRemoveCmd() *cobra.Command {
	var configPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "remove <id>",
		Short: "Remove an identity or operator from the config: cut off at the gateway's next reload",
		Long: `Remove an identity or operator from the gateway config. At the next reload its
connections are closed, its key stops working, and what waited for it in its
delivery consumer is dropped (disable keeps that instead). Its key file is
left alone.`,
		Args: cobra.ExactArgs(1), ValidArgsFunction: completeIDs,
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := gateway.RemoveIdentity(configPath, args[0])
			if err != nil {
				return err
			}
			return printResult(cmd, asJSON, agentResult{ID: args[0], Action: "removed", Config: configPath},
				fmt.Sprintf("removed %s from the %s of %s", args[0], list, configPath))
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "tollgate.yaml", "gateway config file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Check a gateway config file"}
	var asJSON bool
	validate := &cobra.Command{
		Use:   "validate <file>",
		Short: "List every problem of a gateway config at once (unknown keys, types, values, policies), with line numbers",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			problems := gateway.CheckConfigFile(args[0])
			if asJSON {
				if problems == nil {
					problems = []string{}
				}
				if err := writeJSON(cmd.OutOrStdout(), map[string]any{"config": args[0], "valid": len(problems) == 0, "problems": problems}); err != nil {
					return err
				}
			}
			if len(problems) > 0 {
				noun := "problems"
				if len(problems) == 1 {
					noun = "problem"
				}
				return fmt.Errorf("%s has %d %s:\n  %s", args[0], len(problems), noun, strings.Join(problems, "\n  "))
			}
			if !asJSON {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is valid\n", args[0])
			}
			return nil
		},
	}
	validate.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(validate)
	return cmd
}
