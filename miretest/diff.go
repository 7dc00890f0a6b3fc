package miretest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/onsi/gomega"
	"github.com/onsi/gomega/types"
)

// matchEvent reports whether actual is the event expected describes: equal
// to it (reflect.DeepEqual, as gomega.Equal), or matched by it if it is a
// Gomega matcher.
func matchEvent(expected, actual any) bool {
	if m, ok := expected.(types.GomegaMatcher); ok {
		ok, err := m.Match(actual)
		return err == nil && ok
	}
	return reflect.DeepEqual(expected, actual)
}

// eventsMatch reports whether actual are the expected events, in order.
func eventsMatch(expected, actual []any) bool {
	if len(expected) != len(actual) {
		return false
	}
	for i := range expected {
		if !matchEvent(expected[i], actual[i]) {
			return false
		}
	}
	return true
}

// describeEvent renders an event as its Go type and its JSON, the form a
// reader compares: main.Withdrawn {"amount":30}.
func describeEvent(event any) string {
	if m, ok := event.(types.GomegaMatcher); ok {
		return fmt.Sprintf("an event matching %T", m)
	}
	if event == nil {
		return "<nil>"
	}
	data, err := json.Marshal(event)
	if err != nil {
		return fmt.Sprintf("%T %+v (no JSON: %v)", event, event, err)
	}
	return fmt.Sprintf("%T %s", event, data)
}

// describeEvents renders events one a line, indented, with their indexes.
func describeEvents(events []any) string {
	if len(events) == 0 {
		return "    (none)\n"
	}
	var b strings.Builder
	for i, e := range events {
		fmt.Fprintf(&b, "    [%d] %s\n", i, describeEvent(e))
	}
	return b.String()
}

// plural returns "1 event" or "n events".
func plural(n int) string {
	if n == 1 {
		return "1 event"
	}
	return fmt.Sprintf("%d events", n)
}

// diffEvents renders the expected and actual events as a diff: a line per
// event, "-" for an expected event that was not recorded there, "+" for a
// recorded event that was not expected there, " " for one that matches.
// It aligns the two lists on their longest common subsequence, so one
// missing or extra event in the middle shows as that one line.
func diffEvents(expected, actual []any) string {
	n, m := len(expected), len(actual)
	// lcs[i][j] is the length of the longest common subsequence of
	// expected[i:] and actual[j:].
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if matchEvent(expected[i], actual[j]) {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var b strings.Builder
	var lookAlikes []string // a removed and an added event that read the same but differ
	removed := map[string]any{}
	line := func(mark string, index int, event any) {
		text := describeEvent(event)
		fmt.Fprintf(&b, "  %s [%d] %s\n", mark, index, text)
		switch mark {
		case "-":
			removed[text] = event
		case "+":
			if exp, ok := removed[text]; ok && !matchEvent(exp, event) {
				lookAlikes = append(lookAlikes, fmt.Sprintf("  expected %#v\n  recorded %#v\n", exp, event))
			}
		}
	}
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && matchEvent(expected[i], actual[j]):
			line(" ", j, actual[j])
			i, j = i+1, j+1
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			line("-", i, expected[i])
			i++
		default:
			line("+", j, actual[j])
			j++
		}
	}
	if len(lookAlikes) > 0 {
		b.WriteString("Events that read the same differ in what JSON does not show:\n")
		for _, l := range lookAlikes {
			b.WriteString(l)
		}
	}
	return b.String()
}

// eventsReport is the failure message of recorded events that are not
// the expected ones.
func eventsReport(what string, expected, actual []any) string {
	return fmt.Sprintf("%s:\nexpected %s, recorded %s (- expected, + recorded; Go type and JSON):\n%s",
		what, plural(len(expected)), plural(len(actual)), diffEvents(expected, actual))
}

// valueMatcher returns expected if it is a Gomega matcher, and otherwise
// a matcher for a value equal to it.
func valueMatcher(expected any) types.GomegaMatcher {
	if m, ok := expected.(types.GomegaMatcher); ok {
		return m
	}
	return gomega.Equal(expected)
}
