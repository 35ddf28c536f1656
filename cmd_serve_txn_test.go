package main

import (
	"strings"
	"testing"
)

// --transaction-version: 2 by default, 1 accepted (CHRONIK_TRANSACTION_VERSION
// too), anything else refused naming the setting.
func TestTransactionVersionSetting(t *testing.T) {
	bc, _, code, msg := resolveOnly(t)
	if code != 0 || bc.TxnVersion != 2 {
		t.Fatalf("default: exit %d (%s), transaction version %d, want 2", code, msg, bc.TxnVersion)
	}
	bc, _, code, msg = resolveOnly(t, "--transaction-version", "1")
	if code != 0 || bc.TxnVersion != 1 {
		t.Fatalf("--transaction-version 1: exit %d (%s), transaction version %d", code, msg, bc.TxnVersion)
	}
	t.Setenv("CHRONIK_TRANSACTION_VERSION", "1")
	if bc, _, code, msg = resolveOnly(t); code != 0 || bc.TxnVersion != 1 {
		t.Fatalf("CHRONIK_TRANSACTION_VERSION=1: exit %d (%s), transaction version %d", code, msg, bc.TxnVersion)
	}
	for _, v := range []string{"0", "3", "-1"} {
		_, _, code, msg := resolveOnly(t, "--transaction-version", v)
		if code != 2 || !strings.Contains(msg, "transaction-version: "+v+" is not 1 or 2") {
			t.Errorf("--transaction-version %s: exit %d message %q", v, code, msg)
		}
	}
}
