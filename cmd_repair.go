package main

import (
	"errors"
	"fmt"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/chronik-stream/chronik/broker"
)

// repairCommand is `chronik repair`: cut damaged partition logs of a
// stopped broker after their last good entry.
func repairCommand() *cli.Command {
	return adminCommand(&cli.Command{
		Name:  "repair",
		Usage: "cut damaged partition logs after their last good entry (the broker must be stopped)",
		Description: `A partition whose log holds a damaged entry (a flipped byte, a truncated
file) is offline: the broker answers KAFKA_STORAGE_ERROR for it, logs the file
and index, and lists it in /readyz and chronik topic describe. With the broker
stopped, repair cuts each damaged log after its last good entry and prints
exactly what was lost (entries, bytes, offsets); the partition then serves
again from the next start, continuing at the first lost offset. In cluster
mode the cut replica catches up from its partition's leader instead: nothing
is lost while the other replicas hold the entries. Use --dry-run to see what
would be cut. The metadata log is checked but never cut.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data-dir", Value: "./chronik-data", EnvVars: []string{"CHRONIK_DATA_DIR"},
				Usage: "the broker's data directory"},
			&cli.StringFlag{Name: "topic", Usage: "only this topic (default every topic)"},
			&cli.IntFlag{Name: "partition", Value: -1, Usage: "only this partition of --topic (default every partition)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "report what would be cut, change nothing"},
			formatFlag("table", "table", "json"),
		},
		Action: withArgs("", 0, 0, repairAction),
	})
}

func repairAction(c *cli.Context, _ []string) error {
	format, err := outputFormat(c, "table", "json")
	if err != nil {
		return err
	}
	if c.Int("partition") >= 0 && c.String("topic") == "" {
		return usageErr("partition: needs --topic")
	}
	if c.Int("partition") < -1 {
		return usageErr("partition: %d is not a partition number", c.Int("partition"))
	}
	if c.String("data-dir") == "" {
		return usageErr("data-dir: must not be empty")
	}
	reps, err := broker.Repair(broker.RepairOptions{
		DataDir:   c.String("data-dir"),
		Topic:     c.String("topic"),
		Partition: int32(c.Int("partition")),
		DryRun:    c.Bool("dry-run"),
		Logger:    zerolog.Nop(),
	})
	if err != nil {
		var le *broker.LockedError
		if errors.As(err, &le) {
			return failErr("%v", err)
		}
		return failErr("repair: %v", err)
	}
	out := c.App.Writer
	if format == "json" {
		type row struct {
			Topic          string `json:"topic"`
			Partition      int32  `json:"partition"`
			Dir            string `json:"dir"`
			File           string `json:"file"`
			Index          uint64 `json:"damaged_index"`
			Reason         string `json:"reason"`
			LastGoodIndex  uint64 `json:"last_good_index"`
			LostEntries    int    `json:"lost_entries"`
			LostBytes      int64  `json:"lost_bytes"`
			LostFromOffset int64  `json:"lost_from_offset"`
			LostToOffset   int64  `json:"lost_to_offset"`
			Replica        bool   `json:"replica"`
			Repaired       bool   `json:"repaired"`
		}
		rows := []row{}
		for _, r := range reps {
			rows = append(rows, row{r.Topic, r.Partition, r.Dir, r.Damage.File, r.Damage.Index, r.Damage.Reason,
				r.LastGoodIndex, r.LostEntries, r.LostBytes, r.LostFromOffset, r.LostToOffset, r.Replica, !c.Bool("dry-run")})
		}
		return writeJSON(out, rows)
	}
	if len(reps) == 0 {
		fmt.Fprintln(out, "no damaged partition logs")
		return nil
	}
	verb := "cut"
	if c.Bool("dry-run") {
		verb = "would cut"
	}
	t := newTable(out, "TOPIC", "PARTITION", "DAMAGE", "LOST")
	for _, r := range reps {
		lost := fmt.Sprintf("%d %s, %d bytes", r.LostEntries, plural(r.LostEntries, "entry", "entries"), r.LostBytes)
		switch {
		case r.LostToOffset >= r.LostFromOffset:
			lost += fmt.Sprintf(", offsets %d-%d", r.LostFromOffset, r.LostToOffset)
		default:
			lost += fmt.Sprintf(", offsets from %d (the damaged entry's own)", r.LostFromOffset)
		}
		if r.Replica {
			lost += "; refetched from the leader"
		}
		topic := r.Topic
		if topic == "" {
			topic = "(unknown topic)"
		}
		t.row(topic, r.Partition, fmt.Sprintf("%s at index %d of %s", r.Damage.Reason, r.Damage.Index, r.Damage.File), verb+" "+lost)
	}
	return t.flush()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
