// Package edge holds the edge node install: install.sh, the systemd unit
// petrel-node.service, and the test that installs into a temporary root
// (DESTDIR), enrols with a real coordinator process, checks the result
// with `petrel node --check-config`, runs the installed node against the
// coordinator, and verifies the unit with systemd-analyze. See
// docs/deploy.md.
package edge
