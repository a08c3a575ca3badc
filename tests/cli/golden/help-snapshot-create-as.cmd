# fixture=none
help snapshot-create-as
