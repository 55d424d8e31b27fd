"""Vendor drivers. Which driver serves which kind of net is declared by the kind
(lager/bench/kinds/*_spec.py, `drivers=`), by the name a bench file gives; drivers are
imported only when a net of theirs is opened."""
