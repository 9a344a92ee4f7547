// Checks the gitleaks rule in ../gitleaks.toml with Go's regexp package (the engine
// gitleaks uses): every sample line matches as its file says, and on 200,000 random
// inputs dense in near-tokens the rule reports exactly the tokens the predicate in
// `predicate` describes, the one tests/scan.rs implements and compares with `scan()`.
//
//	go run docs/scan-samples/check_rule.go docs
package main

import (
	"fmt"
	"math/rand"
	"os"
	"regexp"
	"strings"
)

// The rule's regex, read from the line of gitleaks.toml that starts with "regex = ".
func rule(docs string) string {
	data, err := os.ReadFile(docs + "/gitleaks.toml")
	if err != nil {
		panic(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "regex = '''") {
			return strings.TrimSuffix(strings.TrimPrefix(line, "regex = '''"), "'''")
		}
	}
	panic("no regex line in gitleaks.toml")
}

func alnum(b byte) bool {
	return (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z')
}

// The predicate the rule is meant to have: start offsets of group 1.
func predicate(s string) []int {
	var out []int
	for p := 0; p+40 <= len(s); p++ {
		if p > 0 && (alnum(s[p-1]) || s[p-1] == '_') {
			continue
		}
		if s[p:p+4] != "dyn_" {
			continue
		}
		ok := true
		for i := p + 4; i < p+40; i++ {
			if !alnum(s[i]) {
				ok = false
				break
			}
		}
		if !ok || (p+40 < len(s) && alnum(s[p+40])) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func regexStarts(re *regexp.Regexp, s string) []int {
	var out []int
	for _, m := range re.FindAllStringSubmatchIndex(s, -1) {
		if m[3]-m[2] != 40 {
			panic("group 1 is not 40 bytes")
		}
		out = append(out, m[2])
	}
	return out
}

func eq(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func main() {
	docs := os.Args[1]
	re := regexp.MustCompile(rule(docs))
	fmt.Printf("rule: %s\n", re)
	// The sample files: matches per line.
	for _, f := range []struct {
		name string
		want int
	}{{"tokens.txt", 1}, {"near-misses.txt", 1}, {"non-tokens.txt", 0}} {
		data, err := os.ReadFile(docs + "/scan-samples/" + f.name)
		if err != nil {
			panic(err)
		}
		lines := 0
		for _, line := range strings.Split(string(data), "\n") {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			lines++
			got := regexStarts(re, line)
			if len(got) != f.want {
				fmt.Printf("FAIL %s: %q: %d matches\n", f.name, line, len(got))
				os.Exit(1)
			}
		}
		whole := string(data)
		if !eq(regexStarts(re, whole), predicate(whole)) {
			fmt.Printf("FAIL %s: whole file differs\n", f.name)
			os.Exit(1)
		}
		fmt.Printf("ok %s: %d lines, %d matches in the whole file\n", f.name, lines, len(regexStarts(re, whole)))
	}
	// Random inputs dense in near-tokens: the regex and the predicate agree.
	r := rand.New(rand.NewSource(1))
	pieces := []string{"dyn_", "dyn", "_", "x", "d", "9", "Z", " ", ",", "\n", "-", "\xff", "é", "…", "y", "n"}
	alpha := "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	total := 0
	for iter := 0; iter < 200000; iter++ {
		var b strings.Builder
		for k := r.Intn(12); k > 0; k-- {
			switch r.Intn(4) {
			case 0:
				b.WriteString("dyn_")
				for i := 34 + r.Intn(5); i > 0; i-- {
					b.WriteByte(alpha[r.Intn(62)])
				}
			default:
				b.WriteString(pieces[r.Intn(len(pieces))])
			}
		}
		s := b.String()
		got, want := regexStarts(re, s), predicate(s)
		total += len(want)
		if !eq(got, want) {
			fmt.Printf("FAIL random %q: regex %v predicate %v\n", s, got, want)
			os.Exit(1)
		}
	}
	fmt.Printf("ok random: 200000 inputs, %d matches, regex == predicate\n", total)
}
