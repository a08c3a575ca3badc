# fixture=vm1 env=EDITOR=$TMP/ed-none
snapshot-edit vm1 --current
