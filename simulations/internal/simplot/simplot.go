// Package simplot holds what the simulators' plots share: their size and
// the rendering with the legend in a band under the plot, where it cannot
// hide a line.
package simplot

import (
	"fmt"
	"io"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The plot area of every simulator plot (the legend band comes on top).
const (
	Width  = 9 * vg.Inch
	Height = 5.5 * vg.Inch
)

// WriteLegendBelow renders p with leg (of n entries) in a band under the
// plot and writes the PNG to w.
func WriteLegendBelow(w io.Writer, p *plot.Plot, leg *plot.Legend, n int) error {
	leg.Top, leg.Left = true, true
	leg.XOffs = vg.Points(40)
	leg.Padding = vg.Points(3)
	band := vg.Length(n)*(0.9*leg.TextStyle.Font.Size+leg.Padding) + vg.Points(12)
	img := vgimg.New(Width, Height+band)
	dc := draw.New(img)
	p.Draw(draw.Crop(dc, 0, 0, band, 0))
	leg.Draw(draw.Crop(dc, 0, 0, 0, -Height))
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("write %q: %w", p.Title.Text, err)
	}
	return nil
}
