package httpapi

import "slices"

// RouteMethods returns the route table: each path's methods, sorted.
func (s *Server) RouteMethods() map[string][]string {
	m := map[string][]string{}
	for _, r := range s.routes() {
		for method := range r.methods {
			m[r.path] = append(m[r.path], method)
		}
		slices.Sort(m[r.path])
	}
	return m
}
