package main

import (
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/urfave/cli/v2"
)

// chronik cluster info: who the brokers are (Metadata), for any
// Kafka-compatible cluster. chronik cluster certs: cmd_cluster_certs.go.

func clusterCommand() *cli.Command {
	return commandGroup(&cli.Command{
		Name:  "cluster",
		Usage: "show the cluster's id, controller and brokers; remove a node; make peer TLS certificates",
		Subcommands: []*cli.Command{
			adminCommand(&cli.Command{
				Name:   "info",
				Usage:  "show the cluster id, the controller and every broker with its address",
				Flags:  adminFlags(),
				Action: withArgs("no arguments", 0, 0, clusterInfo),
			}),
			adminCommand(&cli.Command{
				Name:      "remove-node",
				Usage:     "remove a node from a Chronik cluster: it leaves the controller group, the broker list and every partition's replicas",
				ArgsUsage: "NODE_ID",
				Flags:     adminFlags(),
				Action:    withArgs("a node id", 1, 1, clusterRemoveNode),
			}),
			clusterCertsCommand(),
		},
	})
}

// ClusterInfo is what `cluster info --format json` prints.
type ClusterInfo struct {
	ClusterID  string       `json:"cluster_id"`
	Controller int32        `json:"controller"`
	Brokers    []BrokerInfo `json:"brokers"`
}

// BrokerInfo is one broker of a ClusterInfo; rack is null when unset.
type BrokerInfo struct {
	NodeID int32   `json:"node_id"`
	Host   string  `json:"host"`
	Port   int32   `json:"port"`
	Rack   *string `json:"rack"`
}

func clusterInfo(c *cli.Context, _ []string) error {
	format, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	adm, ctx, done, err := adminClient(c)
	if err != nil {
		return err
	}
	defer done()
	m, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return brokerErr(c, ctx, "cluster metadata", err)
	}
	out := ClusterInfo{ClusterID: m.Cluster, Controller: m.Controller, Brokers: []BrokerInfo{}}
	for _, b := range m.Brokers {
		out.Brokers = append(out.Brokers, BrokerInfo{NodeID: b.NodeID, Host: b.Host, Port: b.Port, Rack: b.Rack})
	}
	if format == "json" {
		return writeJSON(c.App.Writer, out)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "Cluster ID: %s\nController: %d\n\n", out.ClusterID, out.Controller)
	tab := newTable(w, "NODE", "HOST", "PORT", "RACK", "CONTROLLER")
	for _, b := range out.Brokers {
		rack, ctl := "", ""
		if b.Rack != nil {
			rack = *b.Rack
		}
		if b.NodeID == out.Controller {
			ctl = "yes"
		}
		tab.row(b.NodeID, b.Host, b.Port, rack, ctl)
	}
	return tab.flush()
}

// clusterRemoveNode sends UnregisterBroker for NODE_ID. The node's
// process keeps running until it is stopped; the partitions it replicated
// keep one replica fewer.
func clusterRemoveNode(c *cli.Context, args []string) error {
	id, err := strconv.ParseInt(args[0], 10, 32)
	if err != nil || id < 0 {
		return usageErr("remove-node: %q is not a node id", args[0])
	}
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := withTimeout(c)
	defer cancel()
	req := kmsg.NewPtrUnregisterBrokerRequest()
	req.BrokerID = int32(id)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return brokerErr(c, ctx, "remove node", err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		msg := ""
		if resp.ErrorMessage != nil {
			msg = *resp.ErrorMessage
		}
		return failErr("remove node %d: %s", id, withMessage(err, msg))
	}
	fmt.Fprintf(c.App.Writer, "removed node %d\n", id)
	return nil
}
