package testsupport

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// Scrape fetches the metrics at url (a server's /metrics, in the
// Prometheus text format) and returns every sample by its series as
// written: `name{label="value"}`, or the bare name. It fails the test on
// an answer other than 200 or a sample it cannot read.
func Scrape(t testing.TB, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return out
}
