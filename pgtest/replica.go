package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ReplicaOptions tunes StartReplica. A nil *ReplicaOptions means an
// asynchronous replica.
type ReplicaOptions struct {
	// Synchronous makes the primary wait, at every commit, until the
	// replica has applied the commit (synchronous_standby_names = '*',
	// synchronous_commit = remote_apply), so a read on the replica right
	// after a commit sees it. Commits on the primary then hang while the
	// replica is stopped or its replay is paused. Defaults to false: the
	// replica replays when it can, as most production replicas do.
	Synchronous bool
}

// StartReplica starts a streaming replica (a hot standby) of primary, a
// throwaway server of this process: it copies the primary with
// pg_basebackup -R into a temporary directory of its own and starts a
// server there that follows the primary's WAL and answers read-only
// queries. The replica has every database of the primary, so a database
// made with NewDatabase on the primary is on the replica as soon as the
// replica has replayed its creation (see Server.CatchUp and
// Server.DatabaseURL). Stop the replica before the primary; stopping it
// on its own, mid-run, is how a spec sees a replica go away.
func StartReplica(ctx context.Context, primary *Server, opts *ReplicaOptions) (*Server, error) {
	if opts == nil {
		opts = &ReplicaOptions{}
	}
	if primary == nil || !primary.owned || primary.replicaOf != nil {
		return nil, errors.New("pgtest: start replica: the primary must be a running throwaway server of this process (StartThrowaway), not an external server or a replica")
	}
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(tempRoot(runtime.GOOS, os.TempDir()), dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s := &Server{dir: dir, owned: true, replicaOf: primary}
	if err := writeOwner(dir); err != nil {
		_ = s.Stop()
		return nil, err
	}
	if err := s.startReplica(ctx, bin); err != nil {
		_ = s.Stop()
		return nil, err
	}
	if opts.Synchronous {
		for _, sql := range synchronousReplica {
			if err := execMaintenance(ctx, primary.url, sql); err != nil {
				_ = s.Stop()
				return nil, fmt.Errorf("pgtest: make the replica synchronous: %w", err)
			}
		}
		// The setting applies to commits after the reload, which is
		// asynchronous: wait until the primary reports it.
		if err := waitFor(ctx, primary.url, `SELECT current_setting('synchronous_standby_names') = '*'`); err != nil {
			_ = s.Stop()
			return nil, fmt.Errorf("pgtest: make the replica synchronous: %w", err)
		}
	}
	return s, nil
}

// synchronousReplica makes every commit on the primary wait until a
// standby has applied it: one statement each, as ALTER SYSTEM refuses to
// run in the implicit transaction of several.
var synchronousReplica = []string{
	`ALTER SYSTEM SET synchronous_standby_names = '*'`,
	`ALTER SYSTEM SET synchronous_commit = 'remote_apply'`,
	`SELECT pg_reload_conf()`,
}

// startReplica copies the primary into s.dir/data and starts the replica.
func (s *Server) startReplica(ctx context.Context, bin string) error {
	acct, err := serverAccount(s.dir)
	if err != nil {
		return err
	}
	data := filepath.Join(s.dir, "data")
	// -R writes standby.signal and primary_conninfo (the connection
	// below); -X stream copies the WAL written meanwhile; -c fast asks
	// for an immediate checkpoint instead of waiting for the next one.
	basebackup, err := findProgram(bin, "pg_basebackup")
	if err != nil {
		return err
	}
	backup := exec.CommandContext(ctx, basebackup,
		"-D", data, "-d", s.replicaOf.url, "-R", "-X", "stream", "-c", "fast", "--no-sync")
	backup.SysProcAttr = acct.initdbAttr()
	if out, err := backup.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: pg_basebackup: %w\n%s", err, out)
	}
	// hot_standby_feedback keeps the primary's vacuum from removing rows
	// a query on the replica still reads, which would cancel that query.
	if err := appendSettings(data, map[string]string{"hot_standby": "on", "hot_standby_feedback": "on"}); err != nil {
		return err
	}
	s.proc, s.url, err = launch(ctx, bin, s.dir, acct)
	if err != nil {
		return err
	}
	return s.waitReady(ctx)
}

// DatabaseURL returns the connection string of database dbURL names (a
// URL of another server, say NewDatabase's on the primary) on this
// server: the replica's URL of a database made on its primary.
func (s *Server) DatabaseURL(dbURL string) (string, error) {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return "", fmt.Errorf("pgtest: parse %q: %w", dbURL, err)
	}
	return withDatabase(s.url, cfg.Database)
}

// CatchUp waits until this replica has replayed everything its primary had
// written when CatchUp was called, so that what committed before the call
// (a database NewDatabase made, events saved) is visible on the replica. It
// is an error on a server that is not a replica, or whose replay is
// paused.
func (s *Server) CatchUp(ctx context.Context) error {
	if s.replicaOf == nil {
		return errors.New("pgtest: catch up: the server is not a replica (StartReplica)")
	}
	var insert string
	if err := queryMaintenance(ctx, s.replicaOf.url, `SELECT pg_current_wal_insert_lsn()::text`, nil, &insert); err != nil {
		return fmt.Errorf("pgtest: catch up: read the primary's WAL position: %w", err)
	}
	target, err := replayTarget(insert)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var caughtUp, paused bool
		if err := queryMaintenance(ctx, s.url, catchUpQuery, []any{target}, &caughtUp, &paused); err != nil {
			return fmt.Errorf("pgtest: catch up: %w", err)
		}
		switch {
		case caughtUp:
			return nil
		case paused:
			return fmt.Errorf("pgtest: catch up: replay is paused before %s (call ResumeReplay)", target)
		case time.Now().After(deadline):
			return fmt.Errorf("pgtest: catch up: the replica has not replayed %s after 60s", target)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgtest: catch up: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// catchUpQuery reports whether the replica has replayed past $1, and
// whether its replay is paused.
const catchUpQuery = `SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn, pg_is_wal_replay_paused()`

// replayTarget returns the WAL position a replica has to replay to have
// applied every record that ended at or before insert, an insert position
// (pg_current_wal_insert_lsn). That is insert itself, except just after a
// page header (the insert position after a record that ended at a page
// boundary), where it is the boundary: replay stops there, at the end of
// the record, for as long as nothing more is written. Headers are 24 bytes,
// or 40 on a segment's first page; no record can end in those first 40
// bytes but one that began before the boundary, so the boundary is the
// same target for it too.
func replayTarget(insert string) (string, error) {
	hi, lo, ok := strings.Cut(insert, "/")
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if !ok || err1 != nil || err2 != nil {
		return "", fmt.Errorf("pgtest: %q is not a WAL position", insert)
	}
	lsn := h<<32 | l
	if off := lsn % walPageSize; off <= walLongHeader {
		lsn -= off
	}
	return fmt.Sprintf("%X/%X", lsn>>32, lsn&0xFFFFFFFF), nil
}

// walPageSize and walLongHeader are PostgreSQL's default WAL page size and
// the size of the longer of its page headers.
const (
	walPageSize   = 8192
	walLongHeader = 40
)

// PauseReplay pauses the replica's replay of WAL (pg_wal_replay_pause):
// it keeps receiving the primary's WAL but shows nothing newer until
// ResumeReplay, a replica lagging on demand.
func (s *Server) PauseReplay(ctx context.Context) error {
	if s.replicaOf == nil {
		return errors.New("pgtest: pause replay: the server is not a replica (StartReplica)")
	}
	if err := execMaintenance(ctx, s.url, `SELECT pg_wal_replay_pause()`); err != nil {
		return fmt.Errorf("pgtest: pause replay: %w", err)
	}
	return nil
}

// ResumeReplay resumes the replay PauseReplay paused.
func (s *Server) ResumeReplay(ctx context.Context) error {
	if s.replicaOf == nil {
		return errors.New("pgtest: resume replay: the server is not a replica (StartReplica)")
	}
	if err := execMaintenance(ctx, s.url, `SELECT pg_wal_replay_resume()`); err != nil {
		return fmt.Errorf("pgtest: resume replay: %w", err)
	}
	return nil
}

// queryMaintenance runs sql with args on a new connection to serverURL and
// scans its one row into dest.
func queryMaintenance(ctx context.Context, serverURL, sql string, args []any, dest ...any) error {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.QueryRow(ctx, sql, args...).Scan(dest...)
}

// waitFor waits up to a minute until the query cond, run on serverURL,
// returns true.
func waitFor(ctx context.Context, serverURL, cond string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		var ok bool
		if err := queryMaintenance(ctx, serverURL, cond, nil, &ok); err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still false after 60s: %s", cond)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
