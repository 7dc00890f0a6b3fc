package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mire-go/mire/pgschema"
)

// NewDatabase creates a fresh database on the server at serverURL, cloned
// from a template that already holds mire's schema (migrated into
// pgschema.SchemaDefault), and returns its connection string and a function
// that drops it. The template is built once per server and migration set,
// under an advisory lock, so parallel test processes can all call this;
// after that a new database takes about a tenth of a second, most of it
// PostgreSQL copying the template (CREATE DATABASE), and dropping it some
// 10-20 ms: cheap for each test process, noticeable for each of hundreds
// of specs.
func NewDatabase(ctx context.Context, serverURL string) (dbURL string, drop func(context.Context) error, err error) {
	template, err := ensureTemplate(ctx, serverURL)
	if err != nil {
		return "", nil, err
	}
	return newDatabase(ctx, serverURL, "mire_test_"+randomSuffix(), template)
}

// NewEmptyDatabase creates a fresh database with no mire schema in it, for
// tests of the migrator itself.
func NewEmptyDatabase(ctx context.Context, serverURL string) (dbURL string, drop func(context.Context) error, err error) {
	return newDatabase(ctx, serverURL, "mire_empty_"+randomSuffix(), "")
}

// The maintenance SQL, with {{name}} and {{template}} standing for quoted
// database names (see fill).
const (
	createDatabase     = `CREATE DATABASE {{name}}`
	createFromTemplate = `CREATE DATABASE {{name}} TEMPLATE {{template}}`
	dropDatabase       = `DROP DATABASE IF EXISTS {{name}} WITH (FORCE)`
	markTemplate       = `ALTER DATABASE {{name}} WITH is_template = true`
	// lockTemplate is held while the template is looked for and built;
	// closing the connection releases it.
	lockTemplate   = `SELECT pg_advisory_lock(hashtextextended('mire.pgtest.template', 0))`
	templateExists = `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)`
)

// fill returns sql with name and template, quoted, in place of {{name}}
// and {{template}}.
func fill(sql, name, template string) string {
	return strings.NewReplacer("{{name}}", pgx.Identifier{name}.Sanitize(),
		"{{template}}", pgx.Identifier{template}.Sanitize()).Replace(sql)
}

// newDatabase creates database name on the server at serverURL, from
// template if it is not "", and returns its URL and the function that
// drops it.
func newDatabase(ctx context.Context, serverURL, name, template string) (string, func(context.Context) error, error) {
	dbURL, err := withDatabase(serverURL, name)
	if err != nil {
		return "", nil, err
	}
	create := createDatabase
	if template != "" {
		create = createFromTemplate
	}
	if err := execMaintenance(ctx, serverURL, fill(create, name, template)); err != nil {
		return "", nil, fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return dbURL, func(ctx context.Context) error {
		return execMaintenance(ctx, serverURL, fill(dropDatabase, name, ""))
	}, nil
}

// ensureTemplate builds the migrated template database if this server does
// not have it yet. Its name carries a hash of the migrations, so a changed
// schema never reuses a stale template.
func ensureTemplate(ctx context.Context, serverURL string) (string, error) {
	sum := sha256.New()
	for _, m := range pgschema.Migrations() {
		sum.Write([]byte(m.SQL))
	}
	name := "mire_template_" + hex.EncodeToString(sum.Sum(nil))[:12]

	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return "", fmt.Errorf("pgtest: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, lockTemplate); err != nil {
		return "", fmt.Errorf("pgtest: lock template: %w", err)
	}
	var exists bool
	if err := conn.QueryRow(ctx, templateExists, name).Scan(&exists); err != nil {
		return "", fmt.Errorf("pgtest: look for template: %w", err)
	}
	if exists {
		return name, nil
	}
	if _, err := conn.Exec(ctx, fill(dropDatabase, name, "")); err != nil {
		return "", fmt.Errorf("pgtest: drop half-built template: %w", err)
	}
	if _, err := conn.Exec(ctx, fill(createDatabase, name, "")); err != nil {
		return "", fmt.Errorf("pgtest: create template: %w", err)
	}
	tmplURL, err := withDatabase(serverURL, name)
	if err != nil {
		return "", err
	}
	pool, err := pgxpool.New(ctx, tmplURL)
	if err != nil {
		return "", fmt.Errorf("pgtest: connect to template: %w", err)
	}
	err = pgschema.Migrate(ctx, pool, pgschema.SchemaDefault)
	pool.Close()
	if err != nil {
		return "", fmt.Errorf("pgtest: migrate template: %w", err)
	}
	if _, err := conn.Exec(ctx, fill(markTemplate, name, "")); err != nil {
		return "", fmt.Errorf("pgtest: mark template: %w", err)
	}
	return name, nil
}

func execMaintenance(ctx context.Context, serverURL, sql string) error {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase returns serverURL pointed at database name. It accepts URLs
// and key=value connection strings.
func withDatabase(serverURL, name string) (string, error) {
	if _, err := pgx.ParseConfig(serverURL); err != nil {
		return "", fmt.Errorf("pgtest: parse %q: %w", serverURL, err)
	}
	if u, err := url.Parse(serverURL); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String(), nil
	}
	return serverURL + " dbname=" + name, nil
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
