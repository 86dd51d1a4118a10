from authserver.cli import main

raise SystemExit(main())
