package models_test

import (
	"fmt"

	"github.com/tollgate/tollgate/broker/models"
)

// A chat completions request is what a model hop reserves against the
// run's budget at admission: the prompt's counted tokens and the
// completion bound, priced from the model's table.
func ExampleRequest_Estimate() {
	req, err := models.ParseRequest([]byte(`{"model":"gpt","max_tokens":200,
		"messages":[{"role":"user","content":"Summarise the quarterly report."}]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	price := models.Price{InputPerMTok: 2.5, OutputPerMTok: 10}
	est := req.Estimate(price, 1024)
	fmt.Printf("reserve %d input + %d output tokens, $%.6f\n", est.InputTokens, est.OutputTokens, est.CostUSD)
	// Output: reserve 8 input + 200 output tokens, $0.002020
}
