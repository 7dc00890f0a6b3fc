package main_test

import (
	"context"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire"
)

// storedEvent is a stored row as export must keep it (positions aside).
type storedEvent struct {
	StreamID, Category, ID, Type, Data, Metadata, RecordedAt string
	Version                                                  int64
	SchemaVersion                                            int
}

func storedEvents(ctx context.Context, pool *pgxpool.Pool) []storedEvent {
	GinkgoHelper()
	rows, err := pool.Query(ctx, `SELECT stream_id, category, event_id::text, type, data::text, coalesce(metadata::text, ''),
		recorded_at::text, version, schema_version FROM mire.events ORDER BY stream_id, version`)
	Expect(err).NotTo(HaveOccurred())
	defer rows.Close()
	var out []storedEvent
	for rows.Next() {
		var e storedEvent
		Expect(rows.Scan(&e.StreamID, &e.Category, &e.ID, &e.Type, &e.Data, &e.Metadata, &e.RecordedAt, &e.Version, &e.SchemaVersion)).To(Succeed())
		out = append(out, e)
	}
	Expect(rows.Err()).NotTo(HaveOccurred())
	return out
}

var _ = Describe("export and import", func() {
	It("round-trips the log into another database, keeping ids, versions, types, metadata and times", func(ctx SpecContext) {
		source := db.DB.Fresh(ctx)
		seed(ctx, source.Store)

		exp := mireCmd(ctx, source.URL, "", "export")
		Expect(exp.Code).To(Equal(0), exp.Stderr)
		Expect(strings.Count(exp.Stdout, "\n")).To(Equal(4))
		Expect(exp.Stderr).To(Equal("Exported 4 events.\n"))

		target := db.DB.Fresh(ctx)
		imp := mireCmd(ctx, target.URL, exp.Stdout, "import")
		Expect(imp.Code).To(Equal(0), imp.Stderr)
		Expect(imp.Stdout).To(HavePrefix("Imported 4 events; 0 were stored already.\n"))
		Expect(imp.Stdout).To(ContainSubstring("mire projections move-to-watermark NAME"))
		Expect(storedEvents(ctx, target.Pool)).To(Equal(storedEvents(ctx, source.Pool)))
		// The planner knows the imported rows before any runner reads them.
		var analyzed bool
		Expect(target.Pool.QueryRow(ctx, `SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables
			WHERE schemaname = 'mire' AND relname = 'events'`).Scan(&analyzed)).To(Succeed())
		Expect(analyzed).To(BeTrue(), "the events table was not analyzed after the import")

		// The imported streams take new writes as the store's own do.
		_, err := target.Store.Append(ctx, "account-alice", mire.Exactly(3), Deposited{Amount: 1})
		Expect(err).NotTo(HaveOccurred())

		// Importing again writes nothing twice.
		again := fromJSON[map[string]any](mireCmd(ctx, target.URL, exp.Stdout, "import", "--json"))
		Expect(again).To(Equal(map[string]any{"read": 4.0, "imported": 0.0, "skipped": 4.0}))
		Expect(storedEvents(ctx, target.Pool)).To(HaveLen(5))
	})

	It("exports one category", func(ctx SpecContext) {
		url := freshSeeded(ctx)
		exp := mireCmd(ctx, url, "", "export", "--category", "parcel")
		Expect(exp.Code).To(Equal(0), exp.Stderr)
		Expect(exp.Stdout).To(MatchRegexp(`^\{"position":4,"stream_id":"parcel-p1","version":1,"category":"parcel","id":"[0-9a-f-]{36}",` +
			`"type":"Shipped","schema_version":2,"data":\{"address":"1 Lane"\},"metadata":\{"actor":"ops","correlation_id":"req-1"\},"recorded_at":"\S+"\}\n$`))
	})

	It("refuses events that do not follow on from the target's streams, and lines that are not events", func(ctx SpecContext) {
		source := db.DB.Fresh(ctx)
		seed(ctx, source.Store)
		exp := mireCmd(ctx, source.URL, "", "export", "--category", "account")

		target := db.DB.Fresh(ctx)
		_, err := target.Store.Append(ctx, "account-alice", mire.NoStream, Opened{Owner: "Other"})
		Expect(err).NotTo(HaveOccurred())
		r := mireCmd(ctx, target.URL, exp.Stdout, "import")
		Expect(r.Code).To(Equal(1))
		Expect(r.Stderr).To(ContainSubstring("line 1: event account-alice v1 does not follow on: the stream is at version 1 here"))
		Expect(storedEvents(ctx, target.Pool)).To(HaveLen(1))

		r = mireCmd(ctx, target.URL, "{\"hello\": 1}\n", "import")
		Expect(r.Code).To(Equal(1))
		Expect(r.Stderr).To(ContainSubstring("line 1: json: unknown field \"hello\" (is it the output of `mire export`?)"))
	})
})
