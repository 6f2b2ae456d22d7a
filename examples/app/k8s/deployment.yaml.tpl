# The hello service, rendered by gitops-update-manifest: placeholders are filled by --set,
# the image is pinned by --image (and --resolve-digests on Cloud Build).
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  labels:
    app: hello
spec:
  replicas: 2
  selector:
    matchLabels:
      app: hello
  template:
    metadata:
      labels:
        app: hello
    spec:
      containers:
        - name: hello
          image: "us-docker.pkg.dev/${PROJECT_ID}/apps/hello:latest"   # pinned on deploy
          ports:
            - containerPort: 8080
          env:
            - name: GREETING_NAME
              value: GKE
          readinessProbe:
            httpGet: {path: /, port: 8080}
