"""`make bench`: figures against the physical floor (issue 7). See bench/README.md."""
