package routing

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Location is a point on the Earth in decimal degrees (WGS 84), used to
// estimate RTTs before network coordinates have converged.
//
// The zero value, 0°N 0°E, means "unset". That point ("Null Island") is open
// ocean in the Gulf of Guinea where no node can stand, so treating it as
// unset costs nothing and keeps the struct a plain pair that encodes to JSON
// (which, unlike NaN, has no trouble with zeros). Valid reports false for it.
type Location struct {
	// Lat is the latitude in degrees, -90 (south) to 90 (north).
	Lat float64 `json:"lat"`
	// Lon is the longitude in degrees, -180 (west) to 180 (east).
	Lon float64 `json:"lon"`
}

const (
	// EarthRadiusKm is the mean Earth radius (IUGG), used by HaversineKm.
	EarthRadiusKm = 6371.0088

	// FibreKmPerMs is how far light travels in optical fibre in one
	// millisecond: about two thirds of c, ~200 km.
	FibreKmPerMs = 200.0

	// GeoPathInflation is the factor by which real network paths exceed the
	// great circle: cables follow coasts, roads and railways, and routing
	// takes detours. Measurement studies put fibre route inflation between
	// about 1.3 (direct submarine cables) and 2 (regional detours); 1.5 is a
	// middle value.
	GeoPathInflation = 1.5

	// GeoRTTFloor is added to every geographic estimate for what distance does
	// not explain: access links, switching, serialisation and the peer's
	// network stack. Two nodes in the same city are rarely closer than this.
	GeoRTTFloor = 2 * time.Millisecond

	// UnknownRTT is the RTT assumed when neither coordinates nor locations
	// give an estimate: a typical intercontinental round trip, so that a peer
	// of unknown distance loses to any peer known to be near and beats none
	// known to be on the far side of the planet.
	UnknownRTT = 250 * time.Millisecond

	// ConvergedCoordinateError is the largest Coordinate.Error (relative
	// prediction error) at which EstimateRTT trusts coordinates. A fresh
	// coordinate starts at VivaldiErrorMax (1.5 by default) and drops below
	// 0.75 after a handful of observations of a reasonably consistent
	// network. Beyond 75 % relative error, a geographic estimate, typically
	// within about ±50 % on the wide area, is the better guess.
	ConvergedCoordinateError = 0.75
)

// Valid reports whether l is set (not the zero value) and has finite
// coordinates with the latitude in [-90, 90] and the longitude in
// [-180, 180].
func (l Location) Valid() bool {
	return finite(l.Lat) && finite(l.Lon) &&
		l.Lat >= -90 && l.Lat <= 90 &&
		l.Lon >= -180 && l.Lon <= 180 &&
		(l.Lat != 0 || l.Lon != 0)
}

// String formats l as "lat,lon", the form ParseLocation reads.
func (l Location) String() string {
	return strconv.FormatFloat(l.Lat, 'f', -1, 64) + "," + strconv.FormatFloat(l.Lon, 'f', -1, 64)
}

// ErrInvalidLocation is wrapped by every error of ParseLocation.
var ErrInvalidLocation = errors.New("routing: invalid location")

// ParseLocation parses "lat,lon" in decimal degrees, such as
// "52.52,13.405" (spaces around either number are allowed), as found in
// flags and configuration files. It returns an error wrapping
// ErrInvalidLocation unless the result is Valid.
func ParseLocation(s string) (Location, error) {
	latStr, lonStr, ok := strings.Cut(s, ",")
	if !ok {
		return Location{}, fmt.Errorf("%w: %q is not \"lat,lon\"", ErrInvalidLocation, s)
	}
	lat, err := strconv.ParseFloat(strings.TrimSpace(latStr), 64)
	if err != nil {
		return Location{}, fmt.Errorf("%w: latitude %q is not a number", ErrInvalidLocation, latStr)
	}
	lon, err := strconv.ParseFloat(strings.TrimSpace(lonStr), 64)
	if err != nil {
		return Location{}, fmt.Errorf("%w: longitude %q is not a number", ErrInvalidLocation, lonStr)
	}
	l := Location{Lat: lat, Lon: lon}
	switch {
	case !finite(lat) || lat < -90 || lat > 90:
		return Location{}, fmt.Errorf("%w: latitude %g out of range [-90, 90]", ErrInvalidLocation, lat)
	case !finite(lon) || lon < -180 || lon > 180:
		return Location{}, fmt.Errorf("%w: longitude %g out of range [-180, 180]", ErrInvalidLocation, lon)
	case !l.Valid():
		return Location{}, fmt.Errorf("%w: 0,0 is reserved to mean unset", ErrInvalidLocation)
	}
	return l, nil
}

// HaversineKm returns the great-circle distance between a and b in
// kilometres on a sphere of radius EarthRadiusKm. It does not check Valid;
// a non-finite input gives NaN.
func HaversineKm(a, b Location) float64 {
	const rad = math.Pi / 180
	lat1, lat2 := a.Lat*rad, b.Lat*rad
	dLat := (b.Lat - a.Lat) * rad
	dLon := (b.Lon - a.Lon) * rad
	sLat, sLon := math.Sin(dLat/2), math.Sin(dLon/2)
	h := sLat*sLat + math.Cos(lat1)*math.Cos(lat2)*sLon*sLon
	// Rounding can push h a hair outside [0, 1] for antipodal points.
	h = math.Min(1, math.Max(0, h))
	return 2 * EarthRadiusKm * math.Asin(math.Sqrt(h))
}

// GeoRTT estimates the round-trip time between a and b from geography alone:
//
//	2 × HaversineKm(a, b) / FibreKmPerMs × GeoPathInflation + GeoRTTFloor
//
// That is 2 ms between neighbours, about 86 ms from London to New York and at
// most about 302 ms between antipodes. If either location is not Valid it
// returns UnknownRTT.
func GeoRTT(a, b Location) time.Duration {
	if !a.Valid() || !b.Valid() {
		return UnknownRTT
	}
	oneWayMs := HaversineKm(a, b) / FibreKmPerMs * GeoPathInflation
	return time.Duration(2*oneWayMs*float64(time.Millisecond)) + GeoRTTFloor
}

// RTTSource says where an RTT estimate came from. The zero value is
// RTTUnknown, so a Candidate nobody measured does not claim a source.
type RTTSource int

const (
	// RTTUnknown means no estimate was possible; the RTT is UnknownRTT.
	RTTUnknown RTTSource = iota
	// RTTFromCoordinates means the RTT is a Vivaldi coordinate distance.
	RTTFromCoordinates
	// RTTFromGeo means the RTT is GeoRTT of the two locations.
	RTTFromGeo
)

// String returns "unknown", "coordinates" or "geo".
func (s RTTSource) String() string {
	switch s {
	case RTTUnknown:
		return "unknown"
	case RTTFromCoordinates:
		return "coordinates"
	case RTTFromGeo:
		return "geo"
	default:
		return "RTTSource(" + strconv.Itoa(int(s)) + ")"
	}
}

// coordinatesConverged reports whether self and peer can be used for an RTT
// estimate: both valid, compatible, and each with an Error below
// ConvergedCoordinateError. The estimate depends on both ends, so both must
// have converged, not only the peer.
func coordinatesConverged(self, peer *Coordinate) bool {
	if !self.IsCompatibleWith(peer) || !self.IsValid() || !peer.IsValid() {
		return false
	}
	ok := func(e float64) bool { return e >= 0 && e < ConvergedCoordinateError }
	return ok(self.Error) && ok(peer.Error)
}

// EstimateRTT returns the best available RTT estimate from self to peer and
// its source, trying in order:
//
//  1. Vivaldi coordinates, when both are valid and compatible and both have
//     converged (Error below ConvergedCoordinateError);
//  2. geography, GeoRTT, when both locations are Valid;
//  3. UnknownRTT with RTTUnknown.
//
// Any argument may be nil or unset.
func EstimateRTT(self, peer *Coordinate, selfLoc, peerLoc Location) (time.Duration, RTTSource) {
	if coordinatesConverged(self, peer) {
		return self.DistanceTo(peer), RTTFromCoordinates
	}
	if selfLoc.Valid() && peerLoc.Valid() {
		return GeoRTT(selfLoc, peerLoc), RTTFromGeo
	}
	return UnknownRTT, RTTUnknown
}
