package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/petrel-mesh/petrel/models"
	"github.com/petrel-mesh/petrel/models/oip"
	"github.com/petrel-mesh/petrel/node/client"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

type clientFlags struct {
	url, proto, ca string
	insecure       bool
	timeout        time.Duration
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8000", "node base URL")
	fs.StringVar(&c.proto, "protocol", "h1", "h1 | h2 | h3 (HTTP/3 over QUIC, always TLS)")
	fs.StringVar(&c.ca, "ca", "", "PEM certificate to trust (e.g. the node's --dev-cert-dir/cert.pem)")
	fs.BoolVar(&c.insecure, "insecure", false, "skip TLS verification (development only)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "request timeout")
}

func (c *clientFlags) client() (*client.Client, error) {
	return client.New(client.Config{BaseURL: c.url, Protocol: c.proto, CAFile: c.ca, Insecure: c.insecure, Timeout: c.timeout})
}

func runInfer(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("petrel infer", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var cf clientFlags
	cf.register(fs)
	model := fs.String("model", "", "model name")
	ver := fs.String("model-version", "", "model version (default: the node's default version)")
	var inputs, outputs multiFlag
	fs.Var(&inputs, "input", "NAME:DATATYPE:SHAPE:VALUES, e.g. input:FP32:1x64:random or x:INT64:2:3,4 (SHAPE 'scalar' for rank 0); repeatable")
	fs.Var(&outputs, "output", "output to return (repeatable; default all)")
	bodyFile := fs.String("body", "", "send this file as the JSON request body instead of --input")
	binary := fs.Bool("binary", false, "send inputs with the binary tensor extension")
	binaryOut := fs.Bool("binary-output", false, "ask for binary outputs")
	maxValues := fs.Int("max-values", 16, "values printed per output")
	id := fs.String("id", "", "request id")
	seed := fs.Uint64("seed", 1, "seed for random input values")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *model == "" || (len(inputs) == 0) == (*bodyFile == "") {
		fmt.Fprintln(e.stderr, "petrel infer: give --model and either --input (one or more) or --body FILE")
		return 2
	}
	c, err := cf.client()
	if err != nil {
		fmt.Fprintf(e.stderr, "petrel infer: %v\n", err)
		return 2
	}
	defer c.Close()

	var resp *oip.Response
	var res *client.Result
	if *bodyFile != "" {
		body, err := os.ReadFile(*bodyFile)
		if err != nil {
			fmt.Fprintf(e.stderr, "petrel infer: %v\n", err)
			return 1
		}
		res, err = c.Post(ctx, client.InferPath(*model, *ver), body, -1, http.Header{})
		if err == nil && res.Status != http.StatusOK {
			err = fmt.Errorf("status %d: %s", res.Status, strings.TrimSpace(string(res.Body)))
		}
		if err == nil {
			resp, err = oip.DecodeResponse(res.Body, res.HeaderLen)
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "petrel infer: %v\n", err)
			return 1
		}
	} else {
		req := &oip.Request{ID: *id, BinaryOutput: *binaryOut}
		rng := rand.New(rand.NewPCG(*seed, 0))
		for _, spec := range inputs {
			t, err := parseInputSpec(spec, rng)
			if err != nil {
				fmt.Fprintf(e.stderr, "petrel infer: --input %q: %v\n", spec, err)
				return 2
			}
			req.Inputs = append(req.Inputs, t)
		}
		for _, o := range outputs {
			req.Outputs = append(req.Outputs, oip.RequestedOutput{Name: o, Binary: *binaryOut})
		}
		resp, res, err = c.Infer(ctx, *model, *ver, req, *binary)
		if err != nil {
			fmt.Fprintf(e.stderr, "petrel infer: %v\n", err)
			return 1
		}
	}
	fmt.Fprintf(e.stdout, "model %s version %s", resp.ModelName, resp.ModelVersion)
	if resp.ID != "" {
		fmt.Fprintf(e.stdout, " id %s", resp.ID)
	}
	fmt.Fprintf(e.stdout, " (served by %s over %s)\n", res.ServedBy, res.Proto)
	for i := range resp.Outputs {
		printTensor(e, &resp.Outputs[i], *maxValues)
	}
	return 0
}

func printTensor(e *env, t *models.Tensor, max int) {
	fmt.Fprintf(e.stdout, "%s %s %v:", t.Name, t.DataType, t.Shape)
	if t.DataType == models.Bytes {
		b, i := t.Data, 0
		for len(b) >= 4 && i < max {
			l := int(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
			if l > len(b)-4 {
				break
			}
			fmt.Fprintf(e.stdout, " %q", b[4:4+l])
			b = b[4+l:]
			i++
		}
		fmt.Fprintln(e.stdout)
		return
	}
	vals, err := t.Float64s()
	if err != nil {
		fmt.Fprintf(e.stdout, " (%v)\n", err)
		return
	}
	for i, v := range vals {
		if i == max {
			fmt.Fprintf(e.stdout, " ... (%d values)", len(vals))
			break
		}
		fmt.Fprintf(e.stdout, " %s", strconv.FormatFloat(v, 'g', 6, 64))
	}
	fmt.Fprintln(e.stdout)
}

// parseInputSpec turns NAME:DATATYPE:SHAPE:VALUES into a tensor by way of
// the OIP JSON decoder, so the CLI accepts exactly what the server does.
func parseInputSpec(spec string, rng *rand.Rand) (models.Tensor, error) {
	parts := strings.SplitN(spec, ":", 4)
	if len(parts) != 4 {
		return models.Tensor{}, errors.New("want NAME:DATATYPE:SHAPE:VALUES")
	}
	name, dt, shapeS, values := parts[0], models.DataType(strings.ToUpper(parts[1])), parts[2], parts[3]
	if !dt.Valid() {
		return models.Tensor{}, fmt.Errorf("unknown datatype %q", parts[1])
	}
	shape := []int64{}
	if shapeS != "scalar" && shapeS != "" {
		for _, d := range strings.Split(shapeS, "x") {
			v, err := strconv.ParseInt(d, 10, 64)
			if err != nil || v < 0 {
				return models.Tensor{}, fmt.Errorf("shape %q: want dimensions like 1x64", shapeS)
			}
			shape = append(shape, v)
		}
	}
	n, err := models.NumElements(shape)
	if err != nil || n > 1<<24 {
		return models.Tensor{}, fmt.Errorf("shape %q is too large", shapeS)
	}
	var data []string
	if values == "random" {
		for range n {
			switch dt {
			case models.FP16, models.BF16, models.FP32, models.FP64:
				data = append(data, strconv.FormatFloat(rng.Float64()*2-1, 'g', 6, 64))
			case models.Bool:
				data = append(data, strconv.FormatBool(rng.IntN(2) == 1))
			case models.Bytes:
				data = append(data, strconv.Quote(fmt.Sprintf("s%d", rng.IntN(100))))
			default:
				data = append(data, strconv.Itoa(rng.IntN(10)))
			}
		}
	} else {
		for _, v := range strings.Split(values, ",") {
			v = strings.TrimSpace(v)
			if dt == models.Bytes {
				v = strconv.Quote(v)
			}
			data = append(data, v)
		}
	}
	body := fmt.Sprintf(`{"inputs":[{"name":%q,"datatype":%q,"shape":%s,"data":[%s]}]}`, name, dt, shapeString(shape), strings.Join(data, ","))
	req, err := oip.DecodeRequest([]byte(body), -1, oip.Limits{})
	if err != nil {
		return models.Tensor{}, err
	}
	return req.Inputs[0], nil
}

func shapeString(s []int64) string {
	p := make([]string, len(s))
	for i, d := range s {
		p[i] = strconv.FormatInt(d, 10)
	}
	return "[" + strings.Join(p, ",") + "]"
}
