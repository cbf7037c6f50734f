package validate

import (
	"fmt"

	"github.com/petrel-mesh/petrel/models"
)

// CompareSignatures compares a new version's signature with the previous
// version's, from the point of view of clients of the previous one.
// breaking lists the changes that can fail or mislead such a client, in
// signature order; notes lists the compatible ones. Both are empty for
// identical signatures.
//
// Inputs (every model input is required):
//   - removed, added, or datatype changed: breaking;
//   - a declared rank where there was none, or a rank change: breaking;
//   - a dynamic dimension becoming fixed, or a fixed one changing value:
//     breaking;
//   - a fixed dimension becoming dynamic, or the rank becoming undeclared:
//     compatible (the new version accepts more).
//
// Outputs:
//   - removed, datatype changed, rank changed, or a fixed dimension
//     changing value: breaking;
//   - added, or a dimension or rank moving between fixed, dynamic and
//     undeclared: compatible (a batch dimension made dynamic still
//     answers a batch of one with one row).
func CompareSignatures(prev, next models.Signature) (breaking, notes []string) {
	for _, p := range prev.Inputs {
		n, ok := next.Input(p.Name)
		if !ok {
			breaking = append(breaking, fmt.Sprintf("input %q removed", p.Name))
			continue
		}
		b, c := compareSpec("input", p, n, true)
		breaking, notes = append(breaking, b...), append(notes, c...)
	}
	for _, n := range next.Inputs {
		if _, ok := prev.Input(n.Name); !ok {
			breaking = append(breaking, fmt.Sprintf("input %q added (every input is required)", n.Name))
		}
	}
	for _, p := range prev.Outputs {
		n, ok := next.Output(p.Name)
		if !ok {
			breaking = append(breaking, fmt.Sprintf("output %q removed", p.Name))
			continue
		}
		b, c := compareSpec("output", p, n, false)
		breaking, notes = append(breaking, b...), append(notes, c...)
	}
	for _, n := range next.Outputs {
		if _, ok := prev.Output(n.Name); !ok {
			notes = append(notes, fmt.Sprintf("output %q added", n.Name))
		}
	}
	return breaking, notes
}

// compareSpec compares one tensor present in both signatures.
func compareSpec(kind string, p, n models.TensorSpec, input bool) (breaking, notes []string) {
	add := func(brk bool, format string, a ...any) {
		msg := fmt.Sprintf("%s %q: ", kind, p.Name) + fmt.Sprintf(format, a...)
		if brk {
			breaking = append(breaking, msg)
		} else {
			notes = append(notes, msg)
		}
	}
	if p.DataType != n.DataType {
		add(true, "datatype %s -> %s", p.DataType, n.DataType)
	}
	switch {
	case p.Shape == nil && n.Shape == nil:
		return breaking, notes
	case p.Shape == nil:
		// A declared rank where any was accepted breaks inputs of other
		// ranks; for an output it only says more.
		add(input, "shape any -> %s", shapeString(n.Shape))
		return breaking, notes
	case n.Shape == nil:
		add(false, "shape %s -> any", shapeString(p.Shape))
		return breaking, notes
	case len(p.Shape) != len(n.Shape):
		add(true, "rank %d -> %d (shape %s -> %s)", len(p.Shape), len(n.Shape), shapeString(p.Shape), shapeString(n.Shape))
		return breaking, notes
	}
	for d := range p.Shape {
		pd, nd := p.Shape[d], n.Shape[d]
		switch {
		case pd == nd:
		case pd >= 0 && nd >= 0:
			add(true, "dimension %d: %d -> %d", d, pd, nd)
		case pd < 0: // dynamic -> fixed
			add(input, "dimension %d: dynamic -> %d", d, nd)
		default: // fixed -> dynamic
			add(false, "dimension %d: %d -> dynamic", d, pd)
		}
	}
	return breaking, notes
}

// shapeString spells a shape as [-1 4] ("any" when undeclared).
func shapeString(s []int64) string {
	if s == nil {
		return "any"
	}
	return fmt.Sprint(s)
}
