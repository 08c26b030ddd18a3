package pgtest

import "os"

// Server is a PostgreSQL server found the way test binaries find theirs
// (LEDGER_TEST_DATABASE_URL, else 127.0.0.1:5432, else a throwaway
// cluster), for programs that are not tests, such as ledger bench.
type Server struct{ srv *server }

// Find discovers a server as the package documentation describes. Close
// stops a throwaway cluster it started.
func Find() (*Server, error) {
	srv, err := discover(os.Getenv(EnvDatabaseURL))
	if err != nil {
		return nil, err
	}
	return &Server{srv: srv}, nil
}

// Throwaway reports whether Find started a cluster of its own.
func (s *Server) Throwaway() bool { return s.srv.cluster != nil }

// CreateDatabase creates an empty database and returns its DSN and a
// function that drops it.
func (s *Server) CreateDatabase() (dsn string, drop func() error, err error) {
	db, err := s.srv.createDatabase()
	if err != nil {
		return "", nil, err
	}
	return db.dsn, func() error { return s.srv.dropDatabase(db.name) }, nil
}

// Close stops and removes a throwaway cluster; a server found elsewhere is
// left alone.
func (s *Server) Close() error {
	if s.srv.cluster != nil {
		return s.srv.cluster.stop()
	}
	return nil
}
