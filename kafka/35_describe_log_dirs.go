package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeLogDirs: v1-5
//
// Behaviour:
//   - One log dir: the broker's data directory, with the size on disk of
//     every partition asked for (null topics: all). Partitions that do not
//     exist are left out, as Kafka does. OffsetLag is 0 (no future
//     replicas), IsFuture false.
//   - v4+: the file system's total and usable bytes (-1 if unknown).
//
// Version notes:
//   - v1: nothing new on the wire
//   - v2: flexible
//   - v3: top-level ErrorCode
//   - v4: TotalBytes, UsableBytes
//   - v5: IsCordoned (never: Chronik has no cordoning)

func (s *Server) handleDescribeLogDirs(_ context.Context, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DescribeLogDirsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeLogDirsResponse)
	if !s.mayCluster(r, kmsg.ACLOperationDescribe) {
		return failDescribeLogDirs(req, s.counted(kerr.ClusterAuthorizationFailed.Code))
	}
	dirPath, parts := s.b.LogDirs()

	var wanted map[string]map[int32]bool // nil: all
	if req.Topics != nil {
		wanted = make(map[string]map[int32]bool, len(req.Topics))
		for _, rt := range req.Topics {
			ps := wanted[rt.Topic]
			if ps == nil {
				ps = make(map[int32]bool, len(rt.Partitions))
				wanted[rt.Topic] = ps
			}
			for _, p := range rt.Partitions {
				ps[p] = true
			}
		}
	}

	dir := kmsg.NewDescribeLogDirsResponseDir()
	dir.Dir = dirPath
	dir.TotalBytes, dir.UsableBytes = diskSpace(dirPath)
	topicIndex := make(map[string]int)
	for _, p := range parts {
		if wanted != nil && !wanted[p.Topic][p.Partition] {
			continue
		}
		i, ok := topicIndex[p.Topic]
		if !ok {
			i = len(dir.Topics)
			topicIndex[p.Topic] = i
			t := kmsg.NewDescribeLogDirsResponseDirTopic()
			t.Topic = p.Topic
			dir.Topics = append(dir.Topics, t)
		}
		dp := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
		dp.Partition, dp.Size = p.Partition, p.Size
		dir.Topics[i].Partitions = append(dir.Topics[i].Partitions, dp)
	}
	resp.Dirs = []kmsg.DescribeLogDirsResponseDir{dir}
	return resp
}

func failDescribeLogDirs(kreq kmsg.Request, code int16) kmsg.Response {
	resp := kreq.ResponseKind().(*kmsg.DescribeLogDirsResponse)
	resp.ErrorCode = code
	dir := kmsg.NewDescribeLogDirsResponseDir()
	dir.ErrorCode = code
	resp.Dirs = []kmsg.DescribeLogDirsResponseDir{dir}
	return resp
}
