package kafka

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-stream/chronik/broker"
)

// Version cases of the ACL APIs. Each version creates its own binding
// (named after the version), describes it and deletes it, on a server
// whose authorizer is off: ACLs are managed all the same.
func init() {
	versionCases[30] = func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		req := kmsg.NewPtrCreateACLsRequest()
		c := kmsg.NewCreateACLsRequestCreation()
		c.ResourceType, c.ResourceName, c.ResourcePatternType = kmsg.ACLResourceTypeTopic, fmt.Sprintf("acl-v%d-", v), kmsg.ACLResourcePatternTypePrefixed
		c.Principal, c.Host, c.Operation, c.PermissionType = "User:versions", "*", kmsg.ACLOperationRead, kmsg.ACLPermissionTypeAllow
		req.Creations = append(req.Creations, c)
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.CreateACLsResponse)
			if len(resp.Results) != 1 {
				t.Fatalf("%d results", len(resp.Results))
			}
			wantCode(t, "create acl", resp.Results[0].ErrorCode)
			if !e.b.Authorize("User:versions", "::1", kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, c.ResourceName+"x") {
				t.Error("created ACL does not allow")
			}
		}
	}
	versionCases[29] = func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		name := fmt.Sprintf("acl-describe-v%d", v)
		createACL(t, e, name)
		req := kmsg.NewPtrDescribeACLsRequest()
		req.ResourceType, req.ResourceName, req.ResourcePatternType = kmsg.ACLResourceTypeTopic, &name, kmsg.ACLResourcePatternTypeMatch
		req.Operation, req.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.DescribeACLsResponse)
			wantCode(t, "describe acls", resp.ErrorCode)
			if len(resp.Resources) != 1 || resp.Resources[0].ResourceName != name || len(resp.Resources[0].ACLs) != 1 ||
				resp.Resources[0].ACLs[0].Principal != "User:versions" {
				t.Fatalf("described %+v", resp.Resources)
			}
		}
	}
	versionCases[31] = func(t *testing.T, e *testEnv, v int16) (kmsg.Request, func(kmsg.Response)) {
		name := fmt.Sprintf("acl-delete-v%d", v)
		createACL(t, e, name)
		req := kmsg.NewPtrDeleteACLsRequest()
		f := kmsg.NewDeleteACLsRequestFilter()
		f.ResourceType, f.ResourceName, f.ResourcePatternType = kmsg.ACLResourceTypeTopic, &name, kmsg.ACLResourcePatternTypeLiteral
		f.Operation, f.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
		req.Filters = append(req.Filters, f)
		return req, func(r kmsg.Response) {
			resp := r.(*kmsg.DeleteACLsResponse)
			if len(resp.Results) != 1 {
				t.Fatalf("%d results", len(resp.Results))
			}
			wantCode(t, "delete acls", resp.Results[0].ErrorCode)
			if m := resp.Results[0].MatchingACLs; len(m) != 1 || m[0].ResourceName != name {
				t.Fatalf("deleted %+v", m)
			}
		}
	}
}

// createACL allows User:versions to read the literal topic name.
func createACL(t *testing.T, e *testEnv, name string) {
	t.Helper()
	errs := e.b.CreateACLs(t.Context(), []broker.ACL{{ResourceType: kmsg.ACLResourceTypeTopic, ResourceName: name,
		PatternType: kmsg.ACLResourcePatternTypeLiteral, Principal: "User:versions", Host: "*",
		Operation: kmsg.ACLOperationRead, Permission: kmsg.ACLPermissionTypeAllow}})
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
}
