// Package readmetest runs the README's Quickstart as written, and then the
// audit export and its verification of docs/audit.md on the Quickstart's
// upload, so that neither can drift from what the binaries do. It has no
// code of its own; its test reads the shell blocks marked
// `<!-- quickstart: … -->`, runs their commands one by one with bash in an
// empty directory (the module's binaries built as the first command says,
// `ledger serve` in the background on free ports), and compares what they
// print with the JSON or text blocks marked
// `<!-- quickstart output: COMMAND -->`, key by key.
package readmetest
