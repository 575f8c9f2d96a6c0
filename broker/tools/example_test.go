package tools_test

import (
	"fmt"

	"github.com/tollgate/tollgate/broker/tools"
)

// A tool call travels as an A2A message whose data part holds the
// arguments; the tool is the hop's target identity.
func ExampleCallMessage() {
	msg := tools.CallMessage(map[string]any{"url": "https://vendor.example/q3"})
	args, err := tools.ArgumentsFrom(msg)
	fmt.Println(args["url"], err)
	// Output: https://vendor.example/q3 <nil>
}
