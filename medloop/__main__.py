from medloop.cli import main

main()
