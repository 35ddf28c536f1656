package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// chronik txn list|describe: transactions as their coordinators hold them
// (ListTransactions, DescribeTransactions), for any Kafka-compatible broker.

func txnCommand() *cli.Command {
	return commandGroup(&cli.Command{
		Name:  "txn",
		Usage: "list and describe transactions",
		Subcommands: []*cli.Command{
			adminCommand(&cli.Command{
				Name:  "list",
				Usage: "list transactional ids and their states",
				Flags: adminFlags(
					repeated("state", "only this state (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort, PrepareEpochFence); repeatable"),
				),
				Action: withArgs("no arguments", 0, 0, txnList),
			}),
			adminCommand(&cli.Command{
				Name:        "describe",
				Usage:       "show a transaction's state, producer, timeout and partitions",
				ArgsUsage:   "TRANSACTIONAL_ID...",
				Description: "An id no coordinator knows exits 1.",
				Flags:       adminFlags(),
				Action:      withArgs("TRANSACTIONAL_ID", 1, -1, txnDescribe),
			}),
		},
	})
}

// Kafka API keys the txn commands need.
const (
	apiDescribeTransactions = 65
	apiListTransactions     = 66
)

// TxnSummary is one entry of `txn list --format json`.
type TxnSummary struct {
	TransactionalID string `json:"transactional_id"`
	State           string `json:"state"`
	ProducerID      int64  `json:"producer_id"`
	Coordinator     int32  `json:"coordinator"`
}

// TxnDescription is one entry of `txn describe --format json`.
type TxnDescription struct {
	TransactionalID string   `json:"transactional_id"`
	State           string   `json:"state"`
	ProducerID      int64    `json:"producer_id"`
	ProducerEpoch   int16    `json:"producer_epoch"`
	TimeoutMs       int32    `json:"timeout_ms"`
	Started         string   `json:"started,omitempty"` // RFC 3339, empty when no transaction is open
	Coordinator     int32    `json:"coordinator"`
	Partitions      []string `json:"partitions"` // topic-partition
}

func txnList(c *cli.Context, _ []string) error {
	format, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	adm, ctx, done, err := adminClient(c)
	if err != nil {
		return err
	}
	defer done()
	if err := requireAPIs(c, ctx, adm, "list transactions", apiListTransactions); err != nil {
		return err
	}
	listed, err := adm.ListTransactions(ctx, nil, repeatedValues(c, "state"))
	if err != nil {
		return brokerErr(c, ctx, "list transactions", err)
	}
	out := []TxnSummary{}
	for _, t := range listed.Sorted() {
		out = append(out, TxnSummary{TransactionalID: t.TxnID, State: t.State, ProducerID: t.ProducerID, Coordinator: t.Coordinator})
	}
	if format == "json" {
		return writeJSON(c.App.Writer, out)
	}
	tab := newTable(c.App.Writer, "TRANSACTIONAL_ID", "STATE", "PRODUCER_ID", "COORDINATOR")
	for _, t := range out {
		tab.row(t.TransactionalID, t.State, t.ProducerID, t.Coordinator)
	}
	return tab.flush()
}

func txnDescribe(c *cli.Context, ids []string) error {
	format, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	adm, ctx, done, err := adminClient(c)
	if err != nil {
		return err
	}
	defer done()
	if err := requireAPIs(c, ctx, adm, "describe transactions", apiDescribeTransactions); err != nil {
		return err
	}
	described, err := adm.DescribeTransactions(ctx, ids...)
	if err != nil {
		return brokerErr(c, ctx, "describe transactions", err)
	}
	out := []TxnDescription{}
	for _, id := range ids {
		d, ok := described[id]
		if !ok || d.Err != nil {
			if ok && !strings.Contains(d.Err.Error(), "TRANSACTIONAL_ID_NOT_FOUND") {
				return brokerErr(c, ctx, "describe transaction "+id, d.Err)
			}
			return failErr("transactional id %q does not exist", id)
		}
		td := TxnDescription{TransactionalID: id, State: d.State, ProducerID: d.ProducerID, ProducerEpoch: d.ProducerEpoch,
			TimeoutMs: d.TimeoutMillis, Coordinator: d.Coordinator, Partitions: []string{}}
		if d.StartTimestamp > 0 {
			td.Started = time.UnixMilli(d.StartTimestamp).UTC().Format(time.RFC3339Nano)
		}
		d.Topics.Sorted().Each(func(t string, p int32) {
			td.Partitions = append(td.Partitions, t+"-"+strconv.Itoa(int(p)))
		})
		out = append(out, td)
	}
	if format == "json" {
		return writeJSON(c.App.Writer, out)
	}
	tab := newTable(c.App.Writer, "TRANSACTIONAL_ID", "STATE", "PRODUCER_ID", "EPOCH", "TIMEOUT_MS", "STARTED", "COORDINATOR", "PARTITIONS")
	for _, t := range out {
		tab.row(t.TransactionalID, t.State, t.ProducerID, t.ProducerEpoch, t.TimeoutMs, t.Started, t.Coordinator, strings.Join(t.Partitions, ","))
	}
	return tab.flush()
}
