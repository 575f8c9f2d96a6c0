package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/enforcer/policy"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Work with Cedar policies"}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate <file|glob>...",
		Short: "Check policies against Tollgate's Cedar schema",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := policy.ReadFiles(args)
			if err != nil {
				return err
			}
			set, err := policy.Compile(files)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d policies in %d files match the schema:\n", set.Len(), len(files))
			for _, id := range set.IDs() {
				fmt.Fprintf(cmd.OutOrStdout(), "  %s\n", id)
			}
			return nil
		},
	})
	return cmd
}
