package sqlite_test

func childCrash(path string) int { return 2 }
