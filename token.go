package mire

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Token is a position in the primary's write-ahead log, taken after a
// commit: a load or read given it (WithToken) reads from the replica only
// once the replica has replayed past it, so it sees that commit. The zero
// Token asks for nothing.
//
// Its String form (a PostgreSQL LSN, "16/B374D848") goes in a cookie or a
// header; ParseToken reads it back. Tokens compare by position: of two
// tokens, the later one proves more.
type Token struct{ lsn uint64 }

// Token returns a Token for everything committed on the primary before the
// call, the saves of this process among it: call it after Save returned
// and hand the token to the reads that must see the save. It costs one
// query on the primary (pg_current_wal_insert_lsn()), which Save does not
// pay unless asked. A position read inside the saving transaction would
// not do: it is before the commit record, and a replica that replayed past
// it may not show the commit yet.
//
//	if err := store.Save(ctx, acc); err != nil { ... }
//	tok, err := store.Token(ctx)
//	http.SetCookie(w, &http.Cookie{Name: "mire-token", Value: tok.String()})
func (s *Store) Token(ctx context.Context) (Token, error) {
	if err := s.check(ctx, "token"); err != nil {
		return Token{}, err
	}
	var lsn string
	if err := s.pool.QueryRow(ctx, selectWALInsertPosition).Scan(&lsn); err != nil {
		return Token{}, fmt.Errorf("mire: token: %w", translate(ctx, err))
	}
	t, err := ParseToken(lsn)
	if err != nil {
		return Token{}, fmt.Errorf("mire: token: the server's WAL position: %w", err)
	}
	return t.replayTarget(), nil
}

// ParseToken reads a Token from its String form. It refuses anything else
// (an empty string, garbage, a cookie cut short) with an error naming the
// value; "0/0" is the zero Token.
func ParseToken(s string) (Token, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if ok && hi != "" && lo != "" && len(hi) <= 8 && len(lo) <= 8 {
		h, err1 := strconv.ParseUint(hi, 16, 32)
		l, err2 := strconv.ParseUint(lo, 16, 32)
		if err1 == nil && err2 == nil {
			return Token{h<<32 | l}, nil
		}
	}
	return Token{}, fmt.Errorf("mire: parse token %.40q: want a WAL position such as 16/B374D848", s)
}

// String returns the token as a PostgreSQL LSN, "16/B374D848"; "0/0" for
// the zero Token.
func (t Token) String() string {
	return fmt.Sprintf("%X/%X", t.lsn>>32, t.lsn&0xFFFFFFFF)
}

// IsZero reports whether t is the zero Token, which asks for nothing.
func (t Token) IsZero() bool { return t.lsn == 0 }

// After reports whether t is a later position than u.
func (t Token) After(u Token) bool { return t.lsn > u.lsn }

// MarshalText returns t's String form, so a Token fits in JSON as a string.
func (t Token) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText parses a Token's String form, as ParseToken does.
func (t *Token) UnmarshalText(b []byte) error {
	parsed, err := ParseToken(string(b))
	if err != nil {
		return err
	}
	*t = parsed
	return nil
}

// replayTarget returns the position a replica must have replayed to have
// applied every record that ended at or before t, an insert position
// (pg_current_wal_insert_lsn). That is t itself, except just after a page
// header (the insert position after a record that ended at a page
// boundary), where it is the boundary: replay stops there, at the end of
// that record, as long as nothing more is written, and waiting for t would
// wait for the next write. Headers are 24 bytes, or 40 on a segment's
// first page; no record can end within 40 bytes after a boundary but one
// that began before it, so the boundary serves for that record too.
func (t Token) replayTarget() Token {
	if off := t.lsn % walPageSize; off <= walLongHeader {
		return Token{t.lsn - off}
	}
	return t
}

// walPageSize and walLongHeader are PostgreSQL's WAL page size (the
// default; a server built with larger pages has boundaries at multiples of
// it too) and the size of the longer of its page headers.
const (
	walPageSize   = 8192
	walLongHeader = 40
)

// tokenKey and primaryKey are the context keys of WithToken and
// WithPrimary.
type (
	tokenKey   struct{}
	primaryKey struct{}
)

// WithToken returns ctx carrying t: a load or read (Load, LoadOrNew,
// ReadStream, ReadCategory, ReadAll) in that context waits until the
// store's replica has replayed past t, at most Config.ReplicaWait, and
// reads from the primary if it has not. With a zero t, or without a
// replica, it changes nothing.
//
//	tok, err := mire.ParseToken(r.Header.Get("Mire-Token"))
//	if err == nil {
//		ctx = mire.WithToken(ctx, tok)
//	}
func WithToken(ctx context.Context, t Token) context.Context {
	return context.WithValue(ctx, tokenKey{}, t)
}

// TokenFromContext returns the Token WithToken put in ctx, if any.
func TokenFromContext(ctx context.Context) (Token, bool) {
	t, ok := ctx.Value(tokenKey{}).(Token)
	return t, ok && !t.IsZero()
}

// WithPrimary returns ctx in which loads and reads go to the primary, never
// the replica: for a decision that must see every commit, at the cost of
// load on the primary.
func WithPrimary(ctx context.Context) context.Context {
	return context.WithValue(ctx, primaryKey{}, true)
}

// primaryRequested reports whether ctx came from WithPrimary.
func primaryRequested(ctx context.Context) bool {
	b, _ := ctx.Value(primaryKey{}).(bool)
	return b
}
