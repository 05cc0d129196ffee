// Package suggest finds the "did you mean" candidate for a mistyped name,
// so configuration keys and event-type aliases are corrected by one rule.
package suggest

// maxLen bounds the words compared. Names come from untrusted input (an
// intent's type can be kilobytes long), and the edit distance costs
// len(word)×len(candidate); no real name is anywhere near this long.
const maxLen = 64

// Closest returns the candidate nearest to word by edit distance
// (Levenshtein, counted in runes), provided it is near enough to be a
// typo: at most a third of word's length, at least 1 and at most 3 edits.
// Ties go to the earlier candidate, so callers get a stable answer by
// passing candidates in a fixed order. ok is false when nothing is close.
func Closest(word string, candidates []string) (best string, ok bool) {
	w := []rune(word)
	if len(w) == 0 || len(w) > maxLen {
		return "", false
	}
	limit := min(max(len(w)/3, 1), 3)
	bestD := limit + 1
	for _, c := range candidates {
		r := []rune(c)
		if len(r) > maxLen {
			continue
		}
		if d := distance(w, r); d < bestD {
			best, bestD = c, d
		}
	}
	return best, bestD <= limit
}

// distance is the Levenshtein distance between a and b, kept to two rows.
func distance(a, b []rune) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
