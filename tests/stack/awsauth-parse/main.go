// awsauth-parse reads kube-system/aws-auth's data (a JSON object of its keys, on stdin) with
// aws-iam-authenticator's own parser, the code EKS runs, and prints what that parser makes of it as JSON:
// {"users": [...], "roles": [...], "accounts": [...], "error": "..."}. The local authenticator maps
// identities from this output, so a document EKS would read differently from our own reading fails the
// end-to-end tests. Built by tests/stack/build-k8s.sh from the Go module proxy.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"sigs.k8s.io/aws-iam-authenticator/pkg/config"
	"sigs.k8s.io/aws-iam-authenticator/pkg/mapper/configmap"
)

type parsed struct {
	Users    []config.UserMapping `json:"users"`
	Roles    []config.RoleMapping `json:"roles"`
	Accounts []string             `json:"accounts"`
	Error    string               `json:"error,omitempty"`
}

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "awsauth-parse: reading stdin:", err)
		os.Exit(2)
	}
	data := map[string]string{}
	if err := json.Unmarshal(raw, &data); err != nil {
		fmt.Fprintln(os.Stderr, "awsauth-parse: stdin is not a JSON object of strings:", err)
		os.Exit(2)
	}
	users, roles, accounts, perr := configmap.ParseMap(data)
	out := parsed{Users: users, Roles: roles, Accounts: accounts}
	if perr != nil {
		out.Error = perr.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "awsauth-parse: writing stdout:", err)
		os.Exit(2)
	}
}
