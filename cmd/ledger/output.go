package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Every command that prints data takes -o (--output): json and table, and
// csv where the output is rows. A command keeps its documented output as
// the default (text, or json for the API clients), so scripts and the
// docs' examples go on working; -o chooses another rendering of the same
// data.

// Output formats.
const (
	outText  = "text"
	outJSON  = "json"
	outTable = "table"
	outCSV   = "csv"
)

// textOutput is -o of a command whose default output is the lines its
// help documents.
type textOutput struct {
	Output string `short:"o" enum:"text,json,table" default:"text" placeholder:"text|json|table" help:"text: the lines documented (default); json: one JSON object; table: key/value lines for people."`
}

// writeObject prints v, which marshals to a JSON object, as indented JSON
// or as "key  value" lines (printTable).
func writeObject(w io.Writer, format string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if format == outTable {
		return printTable(w, b, "")
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

// writeRows prints rows (a slice that marshals to an array of JSON
// objects) as an indented JSON array, a table with the columns cols
// (their JSON names, upper-cased in the header) or CSV with cols as the
// header.
func writeRows(w io.Writer, format string, cols []string, rows any) error {
	b, err := json.Marshal(rows)
	if err != nil {
		return err
	}
	if format == outJSON {
		var out bytes.Buffer
		if string(b) == "null" {
			b = []byte("[]")
		}
		if err := json.Indent(&out, b, "", "  "); err != nil {
			return err
		}
		out.WriteByte('\n')
		_, err = w.Write(out.Bytes())
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var objs []map[string]any
	if err := dec.Decode(&objs); err != nil {
		return fmt.Errorf("output: rows: %w", err)
	}
	if format == outCSV {
		cw := csv.NewWriter(w)
		cw.Write(cols)
		for _, o := range objs {
			rec := make([]string, len(cols))
			for i, c := range cols {
				if o[c] != nil {
					rec[i] = cell(o[c])
				}
			}
			cw.Write(rec)
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(cols, "\t")))
	for _, o := range objs {
		rec := make([]string, len(cols))
		for i, c := range cols {
			rec[i] = cell(o[c])
		}
		fmt.Fprintln(tw, strings.Join(rec, "\t"))
	}
	return tw.Flush()
}

// csvAsTable prints CSV (a header line, then rows) as aligned columns.
func csvAsTable(w io.Writer, data []byte) error {
	if err := csvToTable(bytes.NewReader(data), w); err != nil {
		return unavailable("the server answered with CSV that does not parse: %v", err)
	}
	return nil
}

// tableBlock is how many rows a streamed table aligns at once: memory
// stays bounded whatever the number of rows.
const tableBlock = 1000

// csvToTable reads CSV (a header line, then rows) and writes it as
// aligned columns, the header upper-cased and repeated every tableBlock
// rows, empty cells as "-".
func csvToTable(r io.Reader, w io.Writer) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var header []string
	for n := 0; ; n++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			tw.Flush()
			return err
		}
		for j := range rec {
			rec[j] = clean(rec[j])
			if n == 0 {
				rec[j] = strings.ToUpper(rec[j])
			} else if rec[j] == "" {
				rec[j] = "-"
			}
		}
		if n == 0 {
			header = rec
		} else if n%tableBlock == 0 {
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(tw, strings.Join(header, "\t"))
		}
		fmt.Fprintln(tw, strings.Join(rec, "\t"))
	}
	return tw.Flush()
}
