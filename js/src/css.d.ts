// esbuild bundles the stylesheet; for the type checker it is a side-effect import.
declare module "*.css";
