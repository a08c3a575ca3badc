# fixture=vm1 env=EDITOR=$TMP/ed-rename
snapshot-edit vm1 base
