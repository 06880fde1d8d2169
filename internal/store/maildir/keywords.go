package maildir

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// keywordsName is Dovecot's keyword file of a Maildir folder: lines
// "<index> <keyword>", index 0 is the flag letter 'a', up to 25 ('z').
const keywordsName = "dovecot-keywords"

// maxKeywords is the number of keyword letters of a Maildir file name.
const maxKeywords = 26

// readKeywords reads the keyword file at path: index -> keyword (a
// missing file has none). Lines it cannot read are skipped, as Dovecot
// does.
func readKeywords(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var kw []string
	for _, line := range strings.Split(string(data), "\n") {
		n, name, ok := strings.Cut(line, " ")
		i, err := strconv.Atoi(n)
		if !ok || err != nil || i < 0 || i >= maxKeywords || name == "" {
			continue
		}
		for len(kw) <= i {
			kw = append(kw, "")
		}
		kw[i] = name
	}
	return kw, nil
}

// keywordsBytes is the keyword file holding kw.
func keywordsBytes(kw []string) []byte {
	var b bytes.Buffer
	for i, k := range kw {
		if k != "" {
			b.WriteString(strconv.Itoa(i) + " " + k + "\n")
		}
	}
	return b.Bytes()
}
