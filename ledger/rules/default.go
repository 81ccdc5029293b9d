package rules

import (
	_ "embed"
	"fmt"
)

//go:embed default.yaml
var defaultRules []byte

// DefaultFile names the default rules in errors and listings.
const DefaultFile = "default rules (ledger/rules/default.yaml)"

// Default is the chart that ships with the server.
func Default() *Chart {
	c, err := Load(DefaultFile, defaultRules)
	if err != nil {
		panic(fmt.Sprintf("rules: INVARIANT: the default rules do not load: %v", err))
	}
	return c
}
