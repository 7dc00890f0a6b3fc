// Package pgerr classifies PostgreSQL errors for mire's packages, so the
// root package and projections/ agree on what a server error means.
package pgerr

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// Postgres error codes mire's packages look at.
const (
	UndefinedTable            = "42P01"
	InvalidSchemaName         = "3F000"
	UndefinedFunction         = "42883"
	UndefinedColumn           = "42703"
	UniqueViolation           = "23505"
	SerializationFail         = "40001"
	DeadlockDetected          = "40P01"
	LockNotAvailable          = "55P03"
	QueryCanceled             = "57014"
	CharacterNotInRepertoire  = "22021"
	InvalidTextRepresentation = "22P02"
)

// Code returns err's SQLSTATE, or "" if err is not a server error.
func Code(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// NotMigrated reports whether err says that mire's schema or one of its
// tables does not exist: the store's schema was never migrated.
func NotMigrated(err error) bool {
	switch Code(err) {
	case UndefinedTable, InvalidSchemaName:
		return true
	}
	return false
}
