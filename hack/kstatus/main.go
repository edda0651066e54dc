// Command kstatus prints what sigs.k8s.io/cli-utils' kstatus (the library Flux's health checks and
// `kubectl wait`-like tools use) computes for each object it is given: a JSON array of objects on stdin, a JSON
// array of {"status", "message"} on stdout, in the same order. tests/unit/test_argocd_health.py runs it over
// the operator's objects in every condition state; hack/kstatus.sh builds it.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	// apimachinery's decoder keeps integers int64, as the API server's objects have them (encoding/json's
	// float64 would fail kstatus's metadata.generation lookup).
	input, err := io.ReadAll(os.Stdin)
	var objects []map[string]interface{}
	if err == nil {
		err = utiljson.Unmarshal(input, &objects)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: reading a JSON array of objects from stdin:", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(objects))
	for i, object := range objects {
		computed, err := status.Compute(&unstructured.Unstructured{Object: object})
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: object %d: %v\n", i, err)
			os.Exit(1)
		}
		results = append(results, result{Status: computed.Status.String(), Message: computed.Message})
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}
