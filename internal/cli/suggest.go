package cli

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/alecthomas/kong"
)

// Suggestions for a mistyped command: kong suggests among the commands
// where the word was typed ("ledger lisence" → "license"); suggest looks
// at every command path of the program, so that "ledger license upload"
// gets "ledger upload".

var unexpectedArg = regexp.MustCompile(`^unexpected argument (\S+)$`)

// suggest returns "did you mean …?" for a parse error about an unexpected
// argument that kong had no suggestion for, or "".
func suggest(app *kong.Application, args []string, err error) string {
	m := unexpectedArg.FindStringSubmatch(err.Error())
	if m == nil {
		return ""
	}
	word := m[1]
	typed := map[string]bool{}
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			typed[a] = true
		}
	}
	type cand struct {
		path  string
		score int
	}
	var cands []cand
	var walk func(n *kong.Node, prefix []string)
	walk = func(n *kong.Node, prefix []string) {
		for _, c := range n.Children {
			if c.Hidden || c.Type != kong.CommandNode {
				continue
			}
			path := append(slices.Clone(prefix), c.Name)
			last := c.Name
			d := levenshtein(last, word)
			if last == word || d <= 2 && len(word) > 3 {
				score := d * 10
				for _, p := range path[:len(path)-1] {
					if !typed[p] {
						score++ // a word the user did not type
					}
				}
				cands = append(cands, cand{strings.Join(path, " "), score})
			}
			walk(c, path)
		}
	}
	walk(app.Node, nil)
	if len(cands) == 0 {
		return ""
	}
	slices.SortStableFunc(cands, func(a, b cand) int { return a.score - b.score })
	var best []string
	for _, c := range cands {
		if c.score == cands[0].score {
			best = append(best, fmt.Sprintf("%q", app.Name+" "+c.path))
		}
	}
	if len(best) == 1 {
		return "did you mean " + best[0] + "?"
	}
	return "did you mean one of " + strings.Join(best, ", ") + "?"
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur := make([]int, len(rb)+1)
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(rb)]
}
