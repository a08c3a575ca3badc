# fixture=none
help snapshot-dumpxml
