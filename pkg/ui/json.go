package ui

import (
	"encoding/json"
	"io"
)

// WriteJSON writes v as indented JSON followed by a newline. Commands pass
// explicit view structs with snake_case tags: JSON output is a contract.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
