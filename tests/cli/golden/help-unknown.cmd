# fixture=none
help snapshot-frob
