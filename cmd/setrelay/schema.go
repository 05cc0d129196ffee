package main

import (
	"github.com/spf13/cobra"

	"github.com/setrelay/setrelay/intent"
)

func newSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of an intent, for producers not written in Go",
		Long: `Print the JSON Schema (draft 2020-12) of the intent that producers publish to
setrelay.intent. Producers in other languages can validate intents with it
before publishing. setrelay itself validates more than the schema can express
(per-format subject members, the event catalogue's required members), so an
intent that passes the schema may still be dead-lettered as invalid_intent:
check with 'setrelay sign' when in doubt.`,
		Example: `  setrelay schema > intent.schema.json
  setrelay schema | jq '.properties | keys'`,
		Args: positional(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(intent.Schema())
			return err
		},
	}
}
