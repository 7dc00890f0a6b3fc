package pgschema

import (
	"fmt"
	"strings"
)

// Script returns the SQL that brings schema from migration version from (0
// for a schema mire has never touched) to Latest, for teams that apply
// migrations with their own tool: the schema and its version table, then
// each missing migration in a transaction of its own with its version row,
// as Migrate applies them. It does not take Migrate's advisory lock. A
// name ValidateSchema refuses, or a from outside 0..Latest, is an error; a
// from of Latest gives a script that changes nothing.
func Script(schema string, from int) (string, error) {
	if err := ValidateSchema(schema); err != nil {
		return "", err
	}
	if from < 0 || from > Latest() {
		return "", fmt.Errorf("pgschema: script from version %d: want 0 to %d", from, Latest())
	}
	var b strings.Builder
	if from == Latest() {
		fmt.Fprintf(&b, "-- mire schema %q: nothing to apply after migration %d, the latest\n\n", schema, from)
	} else {
		fmt.Fprintf(&b, "-- mire schema %q: migrations %d to %d\n\n", schema, from+1, Latest())
	}
	b.WriteString(fill(schema, createSchema) + ";\n\n")
	b.WriteString(fill(schema, createVersionTable) + ";\n")
	for _, m := range migrations[from:] {
		fmt.Fprintf(&b, "\n-- %04d_%s\nBEGIN;\n\n", m.Version, m.Name)
		b.WriteString(strings.TrimSpace(m.Render(schema)) + "\n\n")
		insert := strings.Replace(fill(schema, insertVersion), "($1, $2)", fmt.Sprintf("(%d, '%s')", m.Version, strings.ReplaceAll(m.Name, "'", "''")), 1)
		b.WriteString(insert + ";\n\nCOMMIT;\n")
	}
	return b.String(), nil
}
