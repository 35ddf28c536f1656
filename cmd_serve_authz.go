package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/chronik-stream/chronik/broker"
)

// authorizerConfig reads --authorizer, --super-users and
// --allow-everyone-if-no-acl-found. Super users must be principals
// ("User:name"): a typo would otherwise lock the operator out.
func authorizerConfig(c *cli.Context) (broker.AuthorizerConfig, error) {
	ac := broker.AuthorizerConfig{
		Enabled:                   c.Bool("authorizer"),
		SuperUsers:                broker.ParseSuperUsers(c.String("super-users")),
		AllowEveryoneIfNoACLFound: c.Bool("allow-everyone-if-no-acl-found"),
	}
	if err := broker.ValidateSuperUsers(ac.SuperUsers); err != nil {
		return ac, fmt.Errorf("super-users: %w", err)
	}
	return ac, nil
}
